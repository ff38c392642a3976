#include "service/audit.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <fstream>
#include <future>
#include <iterator>
#include <map>
#include <set>
#include <nlohmann/json.hpp>

#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "crypto/random.h"
#include "service/tables.h"

namespace otd::service {

namespace {

constexpr std::string_view kMacField = ",\"mac\":\"";
constexpr std::string_view kShaField = ",\"sha\":\"";  // same length as kMacField
// Lines per MAC: the writer MACs at least every this many lines, which also bounds how far back
// Open() must look for the last MAC'd line.
constexpr size_t kMaxBatchLines = 128;
// Open() reads at most this much of the file's end (kMaxBatchLines lines of at most ~1 KiB).
constexpr off_t kTailWindow = 256 * 1024;
constexpr size_t kMacHexChars = 64;
const std::string kZeroMac(kMacHexChars, '0');

hsm::KeyRef AuditKey() { return hsm::KeyRef::Persistent(std::string(kAuditKeyLabel)); }

// HMAC(audit key, data) in the token; a session lost in between (kUnavailable) is retried once
// with a fresh one, so one invalidated session does not drop a whole batch.
Result<Bytes> MacInToken(hsm::Token& token, ByteView data) {
  for (int attempt = 0;; ++attempt) {
    Result<Bytes> mac = [&]() -> Result<Bytes> {
      OTD_ASSIGN_OR_RETURN(hsm::Session s, token.Acquire());
      return s.Sign(AuditKey(), data);
    }();
    if (mac.ok() || attempt == 1 || mac.status().code() != Code::kUnavailable) {
      return mac;
    }
  }
}

// Only characters that need no JSON escaping and cannot carry anything surprising.
std::string SafeText(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 200)) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == ' ' || c == '_' || c == '.' || c == ':' || c == '=' || c == '/' ||
                    c == '-';
    out += ok ? c : '?';
  }
  return out;
}

Status WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return Unavailable(std::string("audit log write failed: ") + std::strerror(errno));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

// A line's body (everything before its link field), its link (64 hex digits) and whether the link
// is a MAC computed in the token or a plain SHA-256 (lines inside a batch, see audit.h).
struct SplitResult {
  std::string_view body;
  std::string_view link;
  bool mac = false;
};

Result<SplitResult> SplitLine(std::string_view line) {
  if (line.size() < kMacField.size() + kMacHexChars + 2 || line.substr(line.size() - 2) != "\"}") {
    return DataLoss("not an audit line (no trailing mac or sha)");
  }
  const size_t at = line.size() - 2 - kMacHexChars - kMacField.size();
  const std::string_view field = line.substr(at, kMacField.size());
  if (field != kMacField && field != kShaField) {
    return DataLoss("not an audit line (no trailing mac or sha)");
  }
  return SplitResult{line.substr(0, at), line.substr(at + kMacField.size(), kMacHexChars),
                     field == kMacField};
}

struct ParsedHead {
  uint64_t seq = 0;
  std::string prev;
};

Result<ParsedHead> ParseBody(std::string_view body) {
  try {
    auto j = nlohmann::json::parse(std::string(body) + "}");
    ParsedHead h;
    h.seq = j.at("seq").get<uint64_t>();
    h.prev = j.at("prev").get<std::string>();
    return h;
  } catch (const std::exception&) {
    return DataLoss("malformed JSON or missing seq/prev");
  }
}

}  // namespace

struct AuditLog::Entry {
  std::string fields;  // "event":...,"detail":"..."
  int64_t time = 0;
  std::function<void(Status)> done;  // may be empty (RecordAsync)
};

AuditLog::AuditLog(std::string path, int fd, hsm::Token& token, Clock& clock, Logger& log,
                   AuditNodeOptions node)
    : path_(std::move(path)),
      fd_(fd),
      token_(token),
      clock_(clock),
      log_(log),
      prev_mac_(kZeroMac),
      node_(std::move(node)) {}

bool ValidAuditNodeId(std::string_view id) {
  if (id.empty() || id.size() > 64) {
    return false;
  }
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) {
      return false;
    }
  }
  return true;
}

Result<std::string> LoadOrCreateAuditNodeId(const std::string& dir) {
  const std::string path = dir + "/audit-node-id";
  {
    std::ifstream in(path);
    std::string id;
    if (in && std::getline(in, id)) {
      if (!ValidAuditNodeId(id)) {
        return FailedPrecondition(path + " does not hold a valid node id ([A-Za-z0-9._-]{1,64})");
      }
      return id;
    }
  }
  char host[256] = {};
  std::string prefix;
  if (::gethostname(host, sizeof(host) - 1) == 0) {
    for (char c : std::string_view(host).substr(0, 40)) {
      prefix += ValidAuditNodeId(std::string_view(&c, 1)) ? c : '-';
    }
  }
  uint8_t random[4];
  OTD_RETURN_IF_ERROR(crypto::RandomBytes(random));
  const std::string id =
      (prefix.empty() ? std::string("node") : prefix) + "-" + crypto::HexEncode(random);
  // Written to a temporary name and renamed: a crash never leaves a half-written id.
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Unavailable("cannot create " + tmp + ": " + std::strerror(errno));
  }
  Status w = WriteAll(fd, id + "\n");
  const bool synced = w.ok() && ::fsync(fd) == 0;
  ::close(fd);
  if (!synced || ::rename(tmp.c_str(), path.c_str()) != 0) {
    return Unavailable("cannot write " + path);
  }
  return id;
}

Result<std::unique_ptr<AuditLog>> AuditLog::Open(const std::string& path, hsm::Token& token,
                                                 Clock& clock, Logger& log, AuditNodeOptions node) {
  if (!node.node_id.empty() && !ValidAuditNodeId(node.node_id)) {
    return InvalidArgument("audit: the node id must be 1..64 characters of [A-Za-z0-9._-]");
  }
  if (node.store != nullptr && node.node_id.empty()) {
    return InvalidArgument("audit: publishing chain heads needs a node id");
  }
  {
    OTD_ASSIGN_OR_RETURN(hsm::Session s, token.Acquire());
    OTD_ASSIGN_OR_RETURN(bool present, s.HasKey(kAuditKeyLabel));
    if (!present) {
      return FailedPrecondition(std::string("token key ") + std::string(kAuditKeyLabel) +
                                " is missing: run `opentoken-admin init --config FILE`");
    }
  }
  int fd = ::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Unavailable("cannot open the audit log " + path + ": " + std::strerror(errno));
  }
  std::unique_ptr<AuditLog> a(new AuditLog(path, fd, token, clock, log, std::move(node)));
  struct stat st {};
  uint64_t cut = 0;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
    // Continue the chain from the last MAC'd line. What follows it was never acknowledged and is
    // cut: a torn last line, or the SHA-linked start of a batch whose MAC'd last line is missing
    // (the writer acknowledges a batch only after all of it, MAC line included, is durable).
    const off_t size = st.st_size;
    const off_t window = std::min<off_t>(size, kTailWindow);
    std::string tail(static_cast<size_t>(window), '\0');
    if (::pread(fd, tail.data(), tail.size(), size - window) != window) {
      return Unavailable("cannot read the audit log " + path);
    }
    // Walk complete lines backwards from the end to the last MAC'd one.
    size_t end = tail.rfind('\n');       // end of the last complete line
    std::optional<size_t> keep_in_tail;  // bytes of `tail` to keep
    while (end != std::string::npos) {
      const size_t start = end == 0 ? std::string::npos : tail.rfind('\n', end - 1);
      if (start == std::string::npos && window < size) {
        break;  // the line may begin before the window
      }
      const size_t from = start == std::string::npos ? 0 : start + 1;
      std::string_view line(tail.data() + from, end - from);
      auto split = SplitLine(line);
      auto head = split.ok() ? ParseBody(split->body) : Result<ParsedHead>(split.status());
      if (!head.ok()) {
        return DataLoss("the audit log has a malformed line near its end (" +
                        head.status().message() +
                        "); run `opentoken-admin audit-verify` and move the file aside");
      }
      if (split->mac) {
        a->seq_ = head->seq;
        a->prev_mac_ = std::string(split->link);
        keep_in_tail = end + 1;
        break;
      }
      if (start == std::string::npos) {
        keep_in_tail = 0;  // no MAC'd line at all: the whole file is an unacknowledged batch
        break;
      }
      end = start;
    }
    if (!keep_in_tail) {
      if (window < size || tail.rfind('\n') != std::string::npos) {
        return DataLoss("no MAC'd line in the last " + std::to_string(window) +
                        " bytes of the audit log; run `opentoken-admin audit-verify`");
      }
      keep_in_tail = 0;  // a single torn line and nothing else
    }
    const off_t keep = size - window + static_cast<off_t>(*keep_in_tail);
    if (keep < size) {
      cut = static_cast<uint64_t>(size - keep);
      if (::ftruncate(fd, keep) != 0 || ::fdatasync(fd) != 0) {
        return Unavailable("cannot cut the unacknowledged tail of the audit log " + path);
      }
    }
  }
  if (a->node_.store != nullptr) {
    OTD_RETURN_IF_ERROR(a->ClaimNode());
  }
  a->writer_ = std::thread([p = a.get()] { p->WriterLoop(); });
  if (a->node_.store != nullptr && a->node_.anchor_interval_seconds > 0) {
    a->anchor_ = std::thread([p = a.get()] { p->AnchorLoop(); });
  }
  if (cut > 0) {
    log.Warn("audit_log_recovered", {{"torn_bytes_cut", static_cast<int64_t>(cut)}});
    a->RecordAsync({.event = "audit_log_recovered",
                    .outcome = "ok",
                    .detail = "torn_bytes_cut=" + std::to_string(cut)});
  }
  return a;
}

AuditLog::~AuditLog() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (anchor_.joinable()) {
    anchor_.join();
  }
  if (writer_.joinable()) {
    writer_.join();
  }
  {
    // A head write still in flight calls back into this object: wait for it.
    std::unique_lock lock(publish_mu_);
    publish_dirty_ = false;
    publish_cv_.wait(lock, [&] { return !publish_in_flight_; });
  }
  ::close(fd_);
}

namespace {

Bytes HeadValue(const std::string& node, uint64_t seq, const std::string& hash) {
  nlohmann::json j = {{"node", node}, {"seq", seq}, {"hash", hash}};
  return ToBytes(j.dump());
}

struct Head {
  std::string node;
  uint64_t seq = 0;
  std::string hash;
};

Result<Head> ParseHead(ByteView value) {
  try {
    auto j = nlohmann::json::parse(std::string(value.begin(), value.end()));
    Head h{j.at("node").get<std::string>(), j.at("seq").get<uint64_t>(),
           j.at("hash").get<std::string>()};
    if (!ValidAuditNodeId(h.node) || h.hash.size() != kMacHexChars) {
      return DataLoss("malformed audit head");
    }
    for (char c : h.hash) {
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
        return DataLoss("malformed audit head");
      }
    }
    return h;
  } catch (const std::exception&) {
    return DataLoss("malformed audit head");
  }
}

}  // namespace

Status AuditLog::ClaimNode() {
  const Bytes key = ToBytes(node_.node_id);
  OTD_ASSIGN_OR_RETURN(std::optional<Bytes> row, node_.store->Get(tables::kAuditHeads, key));
  if (row) {
    OTD_ASSIGN_OR_RETURN(Head h, ParseHead(*row));
    if (h.seq > seq_ || (h.seq == seq_ && h.hash != prev_mac_)) {
      return FailedPrecondition(
          "audit: node id " + node_.node_id + " has published its chain up to seq " +
          std::to_string(h.seq) + " but " + path_ + " ends at seq " + std::to_string(seq_) +
          ": another daemon on this store uses the same audit.node_id (give each its own), or "
          "this audit file was cut or replaced (run `opentoken-admin audit-verify`)");
    }
  }
  // Claim with a compare-and-swap: two daemons starting at once under one id cannot both win.
  store::Mutation m;
  m.op = row ? store::Op::kUpdate : store::Op::kInsert;
  m.table = std::string(tables::kAuditHeads);
  m.key = key;
  m.value = HeadValue(node_.node_id, seq_, prev_mac_);
  if (row) {
    m.expect = *row;
  }
  Bytes value = m.value;
  if (Status s = node_.store->Apply({std::move(m)}); !s.ok()) {
    if (s.code() == Code::kAlreadyExists || s.code() == Code::kFailedPrecondition) {
      return FailedPrecondition("audit: another daemon on this store claimed audit.node_id " +
                                node_.node_id + " at the same time (give each its own)");
    }
    return s;
  }
  published_ = std::move(value);
  return Status::Ok();
}

void AuditLog::MaybePublishHead() {
  const auto now = std::chrono::steady_clock::now();
  if (now - last_head_publish_ < kHeadPublishInterval) {
    head_pending_ = true;
    return;
  }
  head_pending_ = false;
  last_head_publish_ = now;
  PublishHead();
}

void AuditLog::PublishHead() {
  uint64_t seq = 0;
  std::string hash;
  {
    std::lock_guard lock(mu_);
    seq = seq_;
    hash = prev_mac_;
  }
  {
    std::lock_guard lock(publish_mu_);
    if (conflict_) {
      return;
    }
    if (publish_in_flight_) {
      publish_dirty_ = true;  // the write in flight re-publishes when it is done
      return;
    }
    publish_in_flight_ = true;
  }
  IssuePublish(seq, hash);
}

void AuditLog::IssuePublish(uint64_t seq, const std::string& hash) {
  store::Mutation m;
  m.op = store::Op::kUpdate;
  m.table = std::string(tables::kAuditHeads);
  m.key = ToBytes(node_.node_id);
  m.value = HeadValue(node_.node_id, seq, hash);
  {
    std::lock_guard lock(publish_mu_);
    m.expect = published_;
  }
  Bytes value = m.value;
  node_.store->ApplyAsync({std::move(m)}, [this, value = std::move(value)](const Status& s) {
    // A write whose outcome was unknown (kUnavailable) may have landed: then the row holds it.
    std::optional<Bytes> row;
    if (s.code() == Code::kFailedPrecondition) {
      auto got = node_.store->Get(tables::kAuditHeads, ToBytes(node_.node_id));
      row = got.ok() ? *got : std::nullopt;
    }
    std::unique_lock lock(publish_mu_);
    if (s.ok()) {
      published_ = value;
      uncertain_.reset();
    } else if (s.code() == Code::kFailedPrecondition && row && uncertain_ && *row == *uncertain_) {
      published_ = std::move(row);  // our own earlier write; publish the latest head again
      uncertain_.reset();
      publish_dirty_ = true;
    } else if (s.code() == Code::kFailedPrecondition) {
      // Someone else rewrote this node's head: another daemon under the same node id.
      conflict_ = true;
      log_.Error("audit_node_id_conflict",
                 {{"node", node_.node_id},
                  {"reason",
                   "the published chain head changed under this daemon: another "
                   "daemon uses the same audit.node_id"}});
    } else {
      uncertain_ = value;  // store unreachable: the next batch publishes again
    }
    if (publish_dirty_ && !conflict_) {
      publish_dirty_ = false;
      lock.unlock();
      uint64_t next_seq = 0;
      std::string next_hash;
      {
        std::lock_guard l(mu_);
        next_seq = seq_;
        next_hash = prev_mac_;
      }
      IssuePublish(next_seq, next_hash);
      return;
    }
    publish_in_flight_ = false;
    publish_cv_.notify_all();
  });
}

Result<std::unique_ptr<AuditLog::Entry>> AuditLog::BuildAnchor() {
  if (node_.store == nullptr) {
    return FailedPrecondition("audit anchors need a store");
  }
  std::vector<Head> heads;
  OTD_RETURN_IF_ERROR(node_.store->ForEach(tables::kAuditHeads, [&](ByteView, ByteView value) {
    if (auto h = ParseHead(value); h.ok()) {
      heads.push_back(std::move(h).value());
    }
    return true;
  }));
  auto entry = std::make_unique<Entry>();
  entry->time = clock_.NowSeconds();
  std::string& f = entry->fields;
  f = "\"event\":\"audit_anchor\",\"outcome\":\"ok\",\"heads\":[";
  for (size_t i = 0; i < heads.size(); ++i) {
    // Node ids and hashes were checked by ParseHead: nothing in them needs escaping.
    f += (i == 0 ? "" : ",");
    f += "{\"node\":\"" + heads[i].node + "\",\"seq\":" + std::to_string(heads[i].seq) +
         ",\"hash\":\"" + heads[i].hash + "\"}";
  }
  f += "]";
  return entry;
}

Status AuditLog::WriteAnchor() {
  OTD_ASSIGN_OR_RETURN(std::unique_ptr<Entry> entry, BuildAnchor());
  std::promise<Status> promise;
  std::future<Status> result = promise.get_future();
  entry->done = [&promise](Status s) { promise.set_value(std::move(s)); };
  Enqueue(std::move(entry));
  return result.get();
}

void AuditLog::AnchorLoop() {
  const auto interval = std::chrono::seconds(node_.anchor_interval_seconds);
  for (;;) {
    {
      std::unique_lock lock(mu_);
      if (cv_.wait_for(lock, interval, [&] { return stopping_; })) {
        return;
      }
    }
    auto entry = BuildAnchor();
    if (!entry.ok()) {
      log_.Warn("audit_anchor_failed", {{"reason", entry.status().message()}});
      continue;
    }
    Enqueue(std::move(entry).value());
  }
}

uint64_t AuditLog::last_seq() const {
  std::lock_guard lock(mu_);
  return seq_;
}

Result<bool> AuditLog::Reopen() {
  std::lock_guard one_at_a_time(reopen_mu_);
  struct stat at_path {};
  const bool exists = ::stat(path_.c_str(), &at_path) == 0;
  {
    std::lock_guard fl(file_mu_);
    struct stat current {};
    if (exists && ::fstat(fd_, &current) == 0 && current.st_dev == at_path.st_dev &&
        current.st_ino == at_path.st_ino) {
      return false;  // not rotated
    }
  }
  int fd = ::open(path_.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Unavailable("cannot open the new audit log " + path_ + ": " + std::strerror(errno) +
                       "; the trail goes on in the old file");
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size != 0) {
    ::close(fd);
    return FailedPrecondition("a non-empty file (or not a regular file) is at " + path_ +
                              ": the chain is not continued in it; the trail goes on in the old "
                              "file (move that file away and reload again)");
  }
  // The new directory entry must survive a crash like the lines written into the file.
  const std::string dir = std::filesystem::path(path_).parent_path().string();
  if (int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  {
    std::lock_guard fl(file_mu_);
    std::swap(fd_, fd);
  }
  ::close(fd);  // the old file: every batch written to it was fdatasync'd
  const uint64_t seq = last_seq();
  log_.Info("audit_log_reopened", {{"path", path_}, {"continues_from_seq", seq}});
  RecordAsync({.event = "audit_log_reopened",
               .outcome = "ok",
               .detail = "continues_from_seq=" + std::to_string(seq)});
  return true;
}

Result<AuditIds> AuditLog::HashIds(std::string_view account, std::string_view object) {
  // Identifiers: keyed hashes computed in the token, never the ids.
  auto hashed = [&](uint8_t kind, std::string_view id) -> Result<std::string> {
    static constexpr std::string_view kDomain = "otd-audit-id-v1";
    Bytes msg(kDomain.begin(), kDomain.end());
    msg.push_back(kind);
    msg.insert(msg.end(), id.begin(), id.end());
    OTD_ASSIGN_OR_RETURN(hsm::Session s, token_.Acquire());
    OTD_ASSIGN_OR_RETURN(Bytes mac, s.Sign(AuditKey(), msg));
    mac.resize(16);
    return crypto::HexEncode(mac);
  };
  AuditIds ids;
  if (!account.empty()) {
    // Account ids are not credentials and their hashes are in the trail anyway: remember them
    // (one HMAC in the token less per request). Object ids (token ids, ...) are never kept.
    {
      std::lock_guard lock(hash_mu_);
      if (auto it = account_hashes_.find(std::string(account)); it != account_hashes_.end()) {
        ids.account = it->second;
      }
    }
    if (ids.account.empty()) {
      OTD_ASSIGN_OR_RETURN(ids.account, hashed('a', account));
      std::lock_guard lock(hash_mu_);
      if (account_hashes_.size() >= kMaxCachedAccountHashes) {
        account_hashes_.clear();  // crude bound; refilled on demand
      }
      account_hashes_.emplace(std::string(account), ids.account);
    }
  }
  if (!object.empty()) {
    OTD_ASSIGN_OR_RETURN(ids.object, hashed('o', object));
  }
  return ids;
}

std::unique_ptr<AuditLog::Entry> AuditLog::Build(const AuditEvent& e, const AuditIds& ids) {
  auto entry = std::make_unique<Entry>();
  entry->time = clock_.NowSeconds();
  std::string& f = entry->fields;
  f = "\"event\":\"" + SafeText(e.event) + "\",\"outcome\":\"" + SafeText(e.outcome) + "\"";
  if (e.status != 0) {
    f += ",\"status\":" + std::to_string(e.status);
  }
  if (!ids.account.empty()) {
    f += ",\"account\":\"" + SafeText(ids.account) + "\"";
  }
  if (!ids.object.empty()) {
    f += ",\"object\":\"" + SafeText(ids.object) + "\"";
  }
  if (!e.detail.empty()) {
    f += ",\"detail\":\"" + SafeText(e.detail) + "\"";
  }
  return entry;
}

Result<std::unique_ptr<AuditLog::Entry>> AuditLog::Prepare(const AuditEvent& e) {
  OTD_ASSIGN_OR_RETURN(AuditIds ids, HashIds(e.account, e.object));
  return Build(e, ids);
}

void AuditLog::LogPrepareFailure(const AuditEvent& e, const Status& s) {
  const auto now = std::chrono::steady_clock::now();
  uint64_t failures = 0;
  {
    std::lock_guard lock(prepare_failure_mu_);
    ++prepare_failures_;
    if (last_prepare_failure_log_ && now - *last_prepare_failure_log_ < std::chrono::seconds(10)) {
      return;
    }
    last_prepare_failure_log_ = now;
    failures = std::exchange(prepare_failures_, 0);
  }
  // "audit_event", not "event": that key names the log line itself.
  log_.Error("audit_entry_failed", {{"audit_event", e.event},
                                    {"reason", s.message()},
                                    {"failures", static_cast<int64_t>(failures)}});
}

void AuditLog::Enqueue(std::unique_ptr<Entry> entry) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      queue_.push_back(std::move(entry));
      cv_.notify_all();  // the anchor thread waits on it too
      return;
    }
  }
  if (entry->done) {
    entry->done(Unavailable("the audit log is closing"));
  }
}

Status AuditLog::Record(const AuditEvent& e) {
  std::promise<Status> promise;
  std::future<Status> result = promise.get_future();
  RecordThen(e, [&promise](Status s) { promise.set_value(std::move(s)); });
  return result.get();
}

void AuditLog::RecordThen(const AuditEvent& e, std::function<void(Status)> done) {
  auto entry = Prepare(e);
  if (!entry.ok()) {
    LogPrepareFailure(e, entry.status());
    done(Unavailable("audit trail unavailable"));
    return;
  }
  (*entry)->done = std::move(done);
  Enqueue(std::move(entry).value());
}

void AuditLog::RecordAsync(const AuditEvent& e, const Result<AuditIds>& ids) {
  if (!ids.ok()) {
    LogPrepareFailure(e, ids.status());
    return;
  }
  Enqueue(Build(e, *ids));
}

void AuditLog::RecordAsync(const AuditEvent& e) {
  auto entry = Prepare(e);
  if (!entry.ok()) {
    LogPrepareFailure(e, entry.status());
    return;
  }
  Enqueue(std::move(entry).value());
}

void AuditLog::WriterLoop() {
  for (;;) {
    std::deque<std::unique_ptr<Entry>> batch;
    {
      std::unique_lock lock(mu_);
      const auto ready = [&] { return stopping_ || !queue_.empty(); };
      if (head_pending_) {
        cv_.wait_until(lock, last_head_publish_ + kHeadPublishInterval, ready);
      } else {
        cv_.wait(lock, ready);
      }
      if (queue_.empty()) {
        if (head_pending_) {
          lock.unlock();
          head_pending_ = false;
          last_head_publish_ = std::chrono::steady_clock::now();
          PublishHead();  // the interval is over (or we stop): publish what is written
          continue;
        }
        if (stopping_) {
          return;  // stopping and drained
        }
        continue;
      }
      // At most kMaxBatchLines per batch (and so per MAC); the rest waits for the next round.
      const size_t n = std::min(queue_.size(), kMaxBatchLines);
      std::move(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n),
                std::back_inserter(batch));
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
    }
    Status result = Status::Ok();
    if (broken_) {
      result = Unavailable("the audit log failed earlier; restart the daemon");
    }
    std::string lines;
    const std::string node_field =
        node_.node_id.empty() ? std::string() : ",\"node\":\"" + node_.node_id + "\"";
    uint64_t seq = seq_;
    std::string prev = prev_mac_;
    if (result.ok()) {
      for (size_t i = 0; i < batch.size() && result.ok(); ++i) {
        const auto& entry = batch[i];
        std::string body = "{\"seq\":" + std::to_string(seq + 1) + node_field + ",\"time\":\"" +
                           IsoUtc(entry->time) + "\"," + entry->fields + ",\"prev\":\"" + prev +
                           "\"";
        // The last line of the batch gets the MAC (in the token); the ones before it a SHA-256,
        // which the MAC covers through the chain of "prev" links.
        const bool last = i + 1 == batch.size();
        auto link = last ? MacInToken(token_, AsBytes(body)) : crypto::Sha256(AsBytes(body));
        if (!link.ok()) {
          result = Unavailable("audit: " + link.status().message());
          break;
        }
        prev = crypto::HexEncode(*link);
        lines += body;
        lines += last ? kMacField : kShaField;
        lines += prev;
        lines += "\"}\n";
        ++seq;
      }
    }
    if (result.ok()) {
      std::lock_guard fl(file_mu_);  // Reopen() swaps the file only between batches
      struct stat st {};
      const bool sized = ::fstat(fd_, &st) == 0;  // the end of the last durable line
      result = WriteAll(fd_, lines);
      if (result.ok() && ::fdatasync(fd_) != 0) {
        result = Unavailable(std::string("audit log fdatasync failed: ") + std::strerror(errno));
      }
      if (!result.ok()) {
        // Cut what of this batch reached the file: none of it was acknowledged, and the chain
        // goes on from the last durable line, so there is no hole. Only when the cut fails too is
        // the end of the file unknown; then stop until a restart (Open cuts a torn tail).
        if (!sized || !S_ISREG(st.st_mode) || ::ftruncate(fd_, st.st_size) != 0 ||
            ::fdatasync(fd_) != 0) {
          broken_ = true;
        }
      }
    }
    if (result.ok()) {
      {
        std::lock_guard lock(mu_);
        seq_ = seq;
        prev_mac_ = prev;
      }
      if (node_.store != nullptr) {
        MaybePublishHead();
      }
    } else {
      // At most one line per 10 s: a full disk under load would otherwise flood the journal.
      const auto now = std::chrono::steady_clock::now();
      if (now - last_failure_log_ >= std::chrono::seconds(10)) {
        last_failure_log_ = now;
        log_.Error("audit_log_write_failed", {{"reason", result.message()},
                                              {"entries", static_cast<int64_t>(batch.size())},
                                              {"stopped", broken_}});
      }
    }
    for (auto& entry : batch) {
      if (entry->done) {
        entry->done(result);
      }
    }
  }
}

Result<AuditVerifyReport> VerifyAuditLogs(const std::vector<std::string>& paths, hsm::Token& token,
                                          const std::function<void(uint64_t, uint64_t)>& progress,
                                          bool partial, const AuditLineVisitor& visit) {
  if (paths.empty()) {
    return InvalidArgument("no audit log to verify");
  }
  uint64_t total = 0;
  for (const auto& path : paths) {
    std::error_code ec;
    const uint64_t size = std::filesystem::file_size(path, ec);
    total += ec ? 0 : size;
  }
  OTD_ASSIGN_OR_RETURN(hsm::Session s, token.Acquire());
  AuditVerifyReport report;
  report.last_mac = kZeroMac;
  std::string last_link = kZeroMac;
  uint64_t read = 0;
  for (const std::string& path : paths) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      return NotFound("cannot read the audit log " + path);
    }
    uint64_t line_no = 0;    // in this file
    uint64_t run_start = 0;  // first line (in this file) not yet covered by a MAC; 0: none
    std::string line;
    auto bad = [&](uint64_t at, const std::string& what) {
      report.first_bad_line = at;
      report.bad_file = path;
      report.problem = what;
    };
    auto covered = [&] {
      return run_start == line_no ? std::string(" (the line was edited)")
                                  : " (it covers lines " + std::to_string(run_start) + ".." +
                                        std::to_string(line_no) +
                                        ": one of them was edited, inserted, removed "
                                        "or re-ordered)";
    };
    while (std::getline(in, line)) {
      ++line_no;
      ++report.lines;
      read += line.size() + 1;
      if (progress && (report.lines % 1000 == 0)) {
        progress(std::min(read, total), total);
      }
      if (in.eof()) {
        bad(line_no, "torn last line (no newline)");
        break;
      }
      auto split = SplitLine(line);
      if (!split.ok()) {
        bad(line_no, split.status().message());
        break;
      }
      auto head = ParseBody(split->body);
      if (!head.ok()) {
        bad(line_no, head.status().message());
        break;
      }
      if (report.first_seq == 0) {  // the first line of all
        if (head->seq == 0) {
          bad(line_no, "sequence number 0 (they start at 1)");
          break;
        }
        if (head->seq != 1 && !partial) {
          bad(line_no, "starts at sequence number " + std::to_string(head->seq) +
                           ", not 1: it continues an earlier (rotated) file; give the files in "
                           "order (audit-verify OLD NEW), or --partial to check it from there on");
          break;
        }
        if (head->seq != 1) {
          last_link = head->prev;  // the line it links to is not here to check
        }
        report.first_seq = head->seq;
        report.last_seq = head->seq - 1;
      }
      if (head->seq != report.last_seq + 1) {
        bad(line_no, "sequence number " + std::to_string(head->seq) + " where " +
                         std::to_string(report.last_seq + 1) +
                         " was expected (a line was removed or inserted)");
        break;
      }
      if (head->prev != last_link) {
        bad(line_no, line_no == 1 && report.lines > 1
                         ? "does not chain to the last line of the file before it (a file or "
                           "lines are missing, or the files are not in order)"
                         : "does not chain to the line before it (a line was removed, edited "
                           "or re-ordered)");
        break;
      }
      auto link = crypto::HexDecode(split->link);
      if (!link.ok()) {
        bad(line_no, "malformed mac or sha");
        break;
      }
      if (run_start == 0) {
        run_start = line_no;
      }
      if (split->mac) {
        OTD_ASSIGN_OR_RETURN(bool ok, s.Verify(AuditKey(), AsBytes(split->body), *link));
        if (!ok) {
          bad(run_start, "MAC of line " + std::to_string(line_no) + " does not verify" + covered());
          break;
        }
        report.last_mac = std::string(split->link);
        run_start = 0;
      } else {
        OTD_ASSIGN_OR_RETURN(Bytes sha, crypto::Sha256(AsBytes(split->body)));
        if (sha != *link) {
          bad(line_no, "SHA-256 does not match (the line was edited)");
          break;
        }
      }
      last_link = std::string(split->link);
      report.last_seq = head->seq;
      if (visit) {
        visit(head->seq, split->body, split->link, split->mac);
      }
    }
    if (report.ok() && run_start != 0) {
      bad(run_start, "lines " + std::to_string(run_start) + ".." + std::to_string(line_no) +
                         " are not covered by a MAC (the file was cut inside a batch, or lines "
                         "were appended)");
    }
    if (!report.ok()) {
      break;
    }
  }
  if (progress) {
    progress(total, total);
  }
  return report;
}

bool AuditTrailReport::ok() const {
  if (!problems.empty()) {
    return false;
  }
  for (const auto& c : chains) {
    if (!c.report.ok()) {
      return false;
    }
  }
  return true;
}

namespace {

// The node and seq a file's first line names ("" / 0 when it has none or cannot be read).
std::pair<std::string, uint64_t> FirstLineOf(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string line;
  if (!in || !std::getline(in, line)) {
    return {"", 0};
  }
  auto split = SplitLine(line);
  if (!split.ok()) {
    return {"", 0};
  }
  try {
    auto j = nlohmann::json::parse(std::string(split->body) + "}");
    return {j.value("node", std::string()), j.value("seq", uint64_t{0})};
  } catch (const std::exception&) {
    return {"", 0};
  }
}

struct AnchorSeen {
  std::string node;  // the node that wrote the anchor
  uint64_t seq = 0;
  std::vector<Head> heads;
};

}  // namespace

Result<AuditTrailReport> VerifyAuditTrail(const std::vector<std::string>& paths, hsm::Token& token,
                                          const std::function<void(uint64_t, uint64_t)>& progress,
                                          bool partial) {
  std::vector<std::string> files;
  for (const std::string& p : paths) {
    std::error_code ec;
    if (std::filesystem::is_directory(p, ec)) {
      std::vector<std::string> in_dir;
      for (const auto& e : std::filesystem::directory_iterator(p, ec)) {
        if (e.is_regular_file(ec)) {
          in_dir.push_back(e.path().string());
        }
      }
      std::sort(in_dir.begin(), in_dir.end());
      files.insert(files.end(), in_dir.begin(), in_dir.end());
    } else {
      files.push_back(p);
    }
  }
  if (files.empty()) {
    return InvalidArgument("no audit log to verify");
  }
  // Group by node, in the order the nodes first appear; a node's files by their first seq.
  AuditTrailReport out;
  std::map<std::string, std::vector<std::pair<uint64_t, std::string>>> by_node;
  std::vector<std::string> order;
  for (const std::string& f : files) {
    auto [node, seq] = FirstLineOf(f);
    if (!by_node.contains(node)) {
      order.push_back(node);
    }
    by_node[node].emplace_back(seq, f);
  }
  uint64_t total = 0;
  for (const std::string& f : files) {
    std::error_code ec;
    const uint64_t size = std::filesystem::file_size(f, ec);
    total += ec ? 0 : size;
  }
  uint64_t before = 0;
  std::vector<AnchorSeen> anchors;
  std::map<std::string, std::map<uint64_t, std::string>> macs;  // node -> seq -> MAC'd link
  for (const std::string& node : order) {
    auto& group = by_node[node];
    if (!node.empty()) {
      std::stable_sort(group.begin(), group.end(),
                       [](const auto& a, const auto& b) { return a.first < b.first; });
    }
    AuditChainReport chain;
    chain.node = node;
    for (const auto& g : group) {
      chain.files.push_back(g.second);
    }
    auto& seqs = macs[node];
    auto visit = [&](uint64_t seq, std::string_view body, std::string_view link, bool mac) {
      if (mac) {
        seqs[seq] = std::string(link);
      }
      if (body.find("\"event\":\"audit_anchor\"") == std::string_view::npos) {
        return;
      }
      try {
        auto j = nlohmann::json::parse(std::string(body) + "}");
        if (j.value("event", std::string()) != "audit_anchor") {
          return;
        }
        AnchorSeen a{node, seq, {}};
        for (const auto& h : j.at("heads")) {
          a.heads.push_back({h.at("node").get<std::string>(), h.at("seq").get<uint64_t>(),
                             h.at("hash").get<std::string>()});
        }
        anchors.push_back(std::move(a));
      } catch (const std::exception&) {
        // A MAC'd line the daemon wrote is well-formed; a malformed one fails its MAC anyway.
      }
    };
    const uint64_t base = before;
    OTD_ASSIGN_OR_RETURN(chain.report, VerifyAuditLogs(
                                           chain.files, token,
                                           [&](uint64_t done, uint64_t) {
                                             if (progress) {
                                               progress(std::min(base + done, total), total);
                                             }
                                           },
                                           partial, visit));
    for (const auto& f : chain.files) {
      std::error_code ec;
      const uint64_t size = std::filesystem::file_size(f, ec);
      before += ec ? 0 : size;
    }
    out.chains.push_back(std::move(chain));
  }
  out.anchors = anchors.size();
  // Only anchors from intact chains vouch for anything (a broken chain is reported already).
  std::set<std::string> missing;
  std::set<std::string> truncated;
  for (const AnchorSeen& a : anchors) {
    const auto chain = std::find_if(out.chains.begin(), out.chains.end(),
                                    [&](const auto& c) { return c.node == a.node; });
    if (chain == out.chains.end() || !chain->report.ok()) {
      continue;
    }
    for (const Head& h : a.heads) {
      const auto target = std::find_if(out.chains.begin(), out.chains.end(),
                                       [&](const auto& c) { return c.node == h.node; });
      const std::string by = "the anchor at node " + a.node + " seq " + std::to_string(a.seq);
      if (target == out.chains.end()) {
        if (missing.insert(h.node).second) {
          out.problems.push_back("node " + h.node + " is missing: " + by +
                                 " vouches for its chain up to seq " + std::to_string(h.seq) +
                                 " but no file of it was given");
        }
        continue;
      }
      if (!target->report.ok()) {
        continue;
      }
      if (h.seq > target->report.last_seq) {
        if (truncated.insert(h.node).second) {
          out.problems.push_back("node " + h.node + " is truncated: its chain ends at seq " +
                                 std::to_string(target->report.last_seq) + " (" +
                                 target->files.back() + "), but " + by + " vouches for seq " +
                                 std::to_string(h.seq));
        }
        continue;
      }
      if (h.seq < target->report.first_seq) {
        continue;  // before the files given (--partial): cannot be checked
      }
      ++out.heads_checked;
      const auto& seqs = macs[h.node];
      auto it = seqs.find(h.seq);
      if (it == seqs.end() || it->second != h.hash) {
        out.problems.push_back("node " + h.node + " seq " + std::to_string(h.seq) +
                               " does not match " + by +
                               " (the chain was replaced or rewritten after it was anchored)");
      }
    }
  }
  if (progress) {
    progress(total, total);
  }
  return out;
}

Result<AuditVerifyReport> VerifyAuditLog(const std::string& path, hsm::Token& token,
                                         const std::function<void(uint64_t, uint64_t)>& progress) {
  return VerifyAuditLogs({path}, token, progress, /*partial=*/false);
}

}  // namespace otd::service
