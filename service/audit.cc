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
// Format 2 (issue 20): short field names, the link kept only on a batch's MAC'd last line.
constexpr std::string_view kV2Prefix = "{\"s\":";
constexpr std::string_view kV2MacField = ",\"m\":\"";
constexpr std::string_view kV2Domain = "otd-audit-v2\n";
constexpr size_t kV2MacBytes = 16;  // HMAC-SHA-256 truncated to 128 bits
constexpr size_t kV2MacChars = 22;  // in base64url without padding

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

// The link text of a line as the chain goes on from it: a format-1 link (64 hex digits, SHA-256
// or HMAC) or a format-2 MAC (22 base64url characters, HMAC truncated to 128 bits).
Result<Bytes> LinkBytes(std::string_view link) {
  if (link.size() == kMacHexChars) {
    return crypto::HexDecode(link);
  }
  if (link.size() == kV2MacChars) {
    auto b = crypto::Base64UrlDecode(link);
    if (b.ok() && b->size() == kV2MacBytes && crypto::Base64UrlEncode(*b) == link) {
      return b;
    }
  }
  return DataLoss("malformed link");
}

// What a format-2 line's link is computed over: the domain, the previous link, the body.
Bytes V2Message(ByteView prev, std::string_view body) {
  Bytes msg(kV2Domain.size() + prev.size() + body.size());
  std::memcpy(msg.data(), kV2Domain.data(), kV2Domain.size());
  if (!prev.empty()) {
    std::memcpy(msg.data() + kV2Domain.size(), prev.data(), prev.size());
  }
  if (!body.empty()) {
    std::memcpy(msg.data() + kV2Domain.size() + prev.size(), body.data(), body.size());
  }
  return msg;
}

// A format-2 identifier (22 base64url characters) in hex, as format 1 wrote it.
std::string IdHex(const std::string& id) {
  auto b = crypto::Base64UrlDecode(id);
  return b.ok() ? crypto::HexEncode(*b) : id;
}

// A format-2 line's JSON with format 1's field names (identifiers in hex, time extended).
nlohmann::json ExpandV2(const nlohmann::json& j) {
  static const std::pair<const char*, const char*> kNames[] = {
      {"s", "seq"},    {"v", "format"},  {"p", "prev"},   {"n", "node"},    {"t", "time"},
      {"e", "event"},  {"o", "outcome"}, {"c", "status"}, {"a", "account"}, {"i", "object"},
      {"d", "detail"}, {"h", "heads"},   {"m", "mac"}};
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [k, v] : j.items()) {
    std::string name = k;
    for (const auto& [short_name, long_name] : kNames) {
      if (k == short_name) {
        name = long_name;
      }
    }
    if (name == "time" && v.is_number_integer()) {
      out[name] = IsoUtc(v.get<int64_t>());  // Unix seconds in the file
    } else if ((name == "account" || name == "object") && v.is_string()) {
      out[name] = IdHex(v.get<std::string>());
    } else if (name == "heads" && v.is_array()) {
      nlohmann::json heads = nlohmann::json::array();
      for (const auto& h : v) {
        heads.push_back({{"node", h.value("n", "")},
                         {"seq", h.value("s", uint64_t{0})},
                         {"hash", h.value("h", "")}});
      }
      out[name] = heads;
    } else {
      out[name] = v;
    }
  }
  return out;
}

// One line of either format, parsed (see audit.h).
struct ParsedLine {  // NOLINT(bugprone-exception-escape): the json member
  int format = 1;
  std::string_view body;  // what the link is computed over (with the previous link, format 2)
  std::string_view link;  // the stored link; empty on a format-2 line without a MAC
  bool mac = false;
  uint64_t seq = 0;
  std::optional<std::string> prev;  // format 1: always; format 2: the "p" of a file's first line
  nlohmann::json fields;            // with format 1's names
};

Result<ParsedLine> ParseLine(std::string_view line) {
  ParsedLine out;
  if (line.starts_with(kV2Prefix)) {
    out.format = 2;
    if (line.size() < kV2Prefix.size() + 2 || line.back() != '}') {
      return DataLoss("not an audit line (no closing brace)");
    }
    const size_t tail = kV2MacField.size() + kV2MacChars + 2;  // ,"m":"<mac>"}
    if (line.size() > tail && line.substr(line.size() - 2) == "\"}" &&
        line.substr(line.size() - tail, kV2MacField.size()) == kV2MacField) {
      out.body = line.substr(0, line.size() - tail);
      out.link = line.substr(line.size() - 2 - kV2MacChars, kV2MacChars);
      out.mac = true;
    } else {
      out.body = line.substr(0, line.size() - 1);
    }
  } else {
    OTD_ASSIGN_OR_RETURN(SplitResult split, SplitLine(line));
    out.body = split.body;
    out.link = split.link;
    out.mac = split.mac;
  }
  try {
    auto j = nlohmann::json::parse(std::string(out.body) + "}");
    if (out.format == 2) {
      if (j.contains("m") || j.contains("v") != j.contains("p") ||
          (j.contains("v") && j.at("v").get<int>() != 2)) {
        return DataLoss("malformed format-2 line (\"v\":2 and \"p\" go together)");
      }
      j = ExpandV2(j);
    }
    out.seq = j.at("seq").get<uint64_t>();
    if (out.format == 1 || j.contains("prev")) {
      out.prev = j.at("prev").get<std::string>();
    }
    out.fields = std::move(j);
  } catch (const std::exception&) {
    return DataLoss("malformed JSON or missing seq/prev");
  }
  return out;
}

// Continues a chain from the last MAC'd line of the file open at `fd`: sets `seq` and `mac` (left
// as they are for an empty file) and cuts what follows that line (never acknowledged); `cut` is
// the number of bytes cut, `size` what is left.
Status RecoverTail(int fd, const std::string& path, uint64_t& seq, std::string& mac, uint64_t& cut,
                   uint64_t& size_left) {
  struct stat st {};
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
      auto head = ParseLine(line);
      if (head.ok() && head->mac && !LinkBytes(head->link).ok()) {
        head = DataLoss("malformed mac");
      }
      if (!head.ok()) {
        return DataLoss("the audit log has a malformed line near its end (" +
                        head.status().message() +
                        "); run `opentoken-admin audit-verify` and move the file aside");
      }
      if (head->mac) {
        seq = head->seq;
        mac = std::string(head->link);
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
  struct stat after {};
  size_left = ::fstat(fd, &after) == 0 ? static_cast<uint64_t>(after.st_size) : 0;
  return Status::Ok();
}

}  // namespace

struct AuditLog::Entry {
  std::string fields;  // "event":...,"detail":"..."
  int64_t time = 0;
  std::function<void(Status)> done;  // may be empty (RecordAsync)
};

AuditLog::AuditLog(std::string path, int fd, hsm::Token& token, Clock& clock, Logger& log,
                   AuditNodeOptions node, AuditSegmentOptions segments)
    : path_(std::move(path)),
      fd_(fd),
      token_(token),
      clock_(clock),
      log_(log),
      prev_mac_(kZeroMac),
      node_(std::move(node)),
      segments_(std::move(segments)) {}

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

namespace {

// fsync of a directory, so that a file created, renamed or removed in it survives a crash.
Status SyncDir(const std::string& dir) {
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    return Unavailable("cannot open the directory " + dir + ": " + std::strerror(errno));
  }
  const bool ok = ::fsync(dfd) == 0;
  ::close(dfd);
  return ok ? Status::Ok() : Unavailable("cannot sync the directory " + dir);
}

bool AllDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// A segment index as written in names: at least 6 digits, zero-padded.
std::string IndexText(uint64_t index) {
  std::string s = std::to_string(index);
  return s.size() < 6 ? std::string(6 - s.size(), '0') + s : s;
}

// A node's segments in `dir`, in index order.
std::vector<std::pair<AuditSegmentName, std::string>> ListSegments(const std::string& dir,
                                                                   std::string_view node) {
  std::vector<std::pair<AuditSegmentName, std::string>> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (!e.is_regular_file(ec)) {
      continue;
    }
    const std::string name = e.path().filename().string();
    if (auto n = ParseAuditSegmentName(name); n && n->node == node) {
      out.emplace_back(*n, name);
    }
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.first.index < b.first.index; });
  return out;
}

}  // namespace

std::optional<AuditSegmentName> ParseAuditSegmentName(std::string_view name) {
  AuditSegmentName out;
  constexpr std::string_view kPrefix = "audit-";
  if (name.ends_with(".log.gz")) {
    out.gz = true;
    name.remove_suffix(3);
  }
  if (!name.starts_with(kPrefix) || !name.ends_with(".log")) {
    return std::nullopt;
  }
  name.remove_prefix(kPrefix.size());
  name.remove_suffix(4);
  // [<node>-]<index>-<YYYYMMDDTHHMMZ>: parsed from the right (node ids may hold '-').
  const size_t dash2 = name.rfind('-');
  if (dash2 == std::string_view::npos || dash2 == 0) {
    return std::nullopt;
  }
  const std::string_view stamp = name.substr(dash2 + 1);
  const size_t dash1 = name.rfind('-', dash2 - 1);
  const std::string_view index = dash1 == std::string_view::npos
                                     ? name.substr(0, dash2)
                                     : name.substr(dash1 + 1, dash2 - dash1 - 1);
  if (dash1 != std::string_view::npos) {
    out.node = std::string(name.substr(0, dash1));
    if (!ValidAuditNodeId(out.node)) {
      return std::nullopt;
    }
  }
  if (index.size() < 6 || index.size() > 18 || !AllDigits(index) || stamp.size() != 14 ||
      stamp[8] != 'T' || stamp[13] != 'Z' || !AllDigits(stamp.substr(0, 8)) ||
      !AllDigits(stamp.substr(9, 4))) {
    return std::nullopt;
  }
  out.index = std::stoull(std::string(index));
  if (out.index == 0) {
    return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = std::stoi(std::string(stamp.substr(0, 4))) - 1900;
  tm.tm_mon = std::stoi(std::string(stamp.substr(4, 2))) - 1;
  tm.tm_mday = std::stoi(std::string(stamp.substr(6, 2)));
  tm.tm_hour = std::stoi(std::string(stamp.substr(9, 2)));
  tm.tm_min = std::stoi(std::string(stamp.substr(11, 2)));
  out.opened = static_cast<int64_t>(::timegm(&tm));
  return out;
}

std::string AuditSegmentFileName(std::string_view node, uint64_t index, int64_t unix_seconds) {
  const std::string iso = IsoUtc(unix_seconds);  // 2026-12-06T09:30:00Z
  const std::string stamp = iso.substr(0, 4) + iso.substr(5, 2) + iso.substr(8, 2) + "T" +
                            iso.substr(11, 2) + iso.substr(14, 2) + "Z";
  return "audit-" + (node.empty() ? std::string() : std::string(node) + "-") + IndexText(index) +
         "-" + stamp + ".log";
}

std::string AuditCheckpointFileName(std::string_view node) {
  return node.empty() ? std::string("audit-checkpoint.json")
                      : "audit-checkpoint-" + std::string(node) + ".json";
}

Status AuditLog::OpenSegments(uint64_t& cut) {
  const std::string& dir = segments_.directory;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return Unavailable("cannot create the audit directory " + dir + ": " + std::strerror(errno));
    }
  }
  auto segs = ListSegments(dir, node_.node_id);
  while (!segs.empty()) {
    const auto [name, file] = segs.back();
    if (name.gz) {
      return FailedPrecondition("the last audit segment " + dir + "/" + file +
                                " is compressed: gunzip it (the daemon continues it)");
    }
    const std::string path = dir + "/" + file;
    int fd = ::open(path.c_str(), O_RDWR | O_APPEND | O_CLOEXEC);
    if (fd < 0) {
      return Unavailable("cannot open the audit segment " + path + ": " + std::strerror(errno));
    }
    uint64_t seq = 0;
    std::string mac = kZeroMac;
    uint64_t size_left = 0;
    uint64_t cut_here = 0;
    if (Status st = RecoverTail(fd, path, seq, mac, cut_here, size_left); !st.ok()) {
      ::close(fd);
      return st;
    }
    if (size_left == 0) {
      // Created by a rotation that crashed before its first batch was durable: nothing in it was
      // acknowledged. Remove it; the chain goes on from the segment before.
      ::close(fd);
      if (segs.size() == 1 && name.index != 1) {
        return DataLoss("the audit segment " + path +
                        " is empty and no segment before it is left: the chain cannot be "
                        "continued (run `opentoken-admin audit-verify`)");
      }
      if (::unlink(path.c_str()) != 0) {
        return Unavailable("cannot remove the empty audit segment " + path);
      }
      OTD_RETURN_IF_ERROR(SyncDir(dir));
      log_.Warn("audit_segment_discarded",
                {{"segment", file}, {"torn_bytes_cut", int64_t(cut_here)}});
      segs.pop_back();
      continue;
    }
    cut += cut_here;
    fd_ = fd;
    seq_ = seq;
    prev_mac_ = mac;
    segment_index_ = name.index;
    segment_name_ = file;
    segment_bytes_ = size_left;
    segment_opened_ = name.opened;
    path_ = path;
    break;
  }
  return Status::Ok();
}

bool AuditLog::NeedNewSegment(int64_t now) const {
  if (segments_.directory.empty()) {
    return false;
  }
  if (fd_ < 0 || new_segment_requested_.load()) {
    return true;
  }
  if (segment_bytes_ == 0) {
    return false;
  }
  return (segments_.max_bytes > 0 && segment_bytes_ >= segments_.max_bytes) ||
         (segments_.max_seconds > 0 && now - segment_opened_ >= segments_.max_seconds);
}

std::string AuditLog::path() const {
  std::lock_guard lock(mu_);
  return path_;
}

Result<std::unique_ptr<AuditLog>> AuditLog::Open(const std::string& path, hsm::Token& token,
                                                 Clock& clock, Logger& log, AuditNodeOptions node,
                                                 AuditSegmentOptions segments) {
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
  int fd = -1;  // with segments: OpenSegments() opens the current one
  if (segments.directory.empty()) {
    fd = ::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
      return Unavailable("cannot open the audit log " + path + ": " + std::strerror(errno));
    }
  }
  std::unique_ptr<AuditLog> a(new AuditLog(segments.directory.empty() ? path : std::string(), fd,
                                           token, clock, log, std::move(node),
                                           std::move(segments)));
  uint64_t cut = 0;
  if (a->segments_.directory.empty()) {
    uint64_t size_left = 0;
    OTD_RETURN_IF_ERROR(RecoverTail(fd, path, a->seq_, a->prev_mac_, cut, size_left));
  } else {
    OTD_RETURN_IF_ERROR(a->OpenSegments(cut));
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
  if (fd_ >= 0) {
    ::close(fd_);
  }
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
    // A link of either format (a node not upgraded yet publishes format-1 links).
    if (!ValidAuditNodeId(h.node) || !LinkBytes(h.hash).ok()) {
      return DataLoss("malformed audit head");
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
  f = "\"e\":\"audit_anchor\",\"o\":\"ok\",\"h\":[";
  for (size_t i = 0; i < heads.size(); ++i) {
    // Node ids and hashes were checked by ParseHead: nothing in them needs escaping.
    f += (i == 0 ? "" : ",");
    f += "{\"n\":\"" + heads[i].node + "\",\"s\":" + std::to_string(heads[i].seq) + ",\"h\":\"" +
         heads[i].hash + "\"}";
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
  if (!segments_.directory.empty()) {
    new_segment_requested_ = true;  // the writer starts a new segment with the next batch
    log_.Info("audit_log_reopened", {{"directory", segments_.directory}, {"new_segment", true}});
    RecordAsync({.event = "audit_log_reopened", .outcome = "ok", .detail = "new_segment"});
    return true;
  }
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
    need_prev_ = true;  // the new file's first line names the link it continues
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
    return crypto::Base64UrlEncode(mac);
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
  f = "\"e\":\"" + SafeText(e.event) + "\",\"o\":\"" + SafeText(e.outcome) + "\"";
  if (e.status != 0) {
    f += ",\"c\":" + std::to_string(e.status);
  }
  if (!ids.account.empty()) {
    f += ",\"a\":\"" + SafeText(ids.account) + "\"";
  }
  if (!ids.object.empty()) {
    f += ",\"i\":\"" + SafeText(ids.object) + "\"";
  }
  if (!e.detail.empty()) {
    f += ",\"d\":\"" + SafeText(e.detail) + "\"";
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
    // A new segment starts with this batch: its header line goes first (see audit.h).
    const int64_t now_s = clock_.NowSeconds();
    const bool rotate = result.ok() && NeedNewSegment(now_s);
    const uint64_t next_index = segment_index_ + 1;
    const std::string next_name =
        rotate ? AuditSegmentFileName(node_.node_id, next_index, now_s) : std::string();
    if (rotate) {
      auto header = std::make_unique<Entry>();
      header->time = now_s;
      header->fields =
          "\"e\":\"audit_segment\",\"o\":\"ok\",\"d\":\"segment=" + std::to_string(next_index) +
          (segment_name_.empty()
               ? std::string()
               : " prev=" + SafeText(segment_name_) + " prev_last_seq=" + std::to_string(seq_)) +
          "\"";
      batch.push_front(std::move(header));
    }
    std::string lines;
    const std::string node_field =
        node_.node_id.empty() ? std::string() : ",\"n\":\"" + node_.node_id + "\"";
    uint64_t seq = seq_;
    std::string prev = prev_mac_;
    // Format 2 (see audit.h): each line's link is computed over the previous link and the line;
    // only the batch's last line stores its link, the MAC. The first line written into a file
    // (and the first after a start) names the link it continues, "p", with "v":2.
    const auto build = [&](bool with_prev) {
      auto prev_bytes = LinkBytes(prev);
      if (!prev_bytes.ok()) {
        result = Unavailable("audit: the chain's last link is malformed");
        return;
      }
      Bytes link = std::move(prev_bytes).value();
      for (size_t i = 0; i < batch.size() && result.ok(); ++i) {
        const auto& entry = batch[i];
        std::string body = "{\"s\":" + std::to_string(seq + 1);
        if (i == 0 && with_prev) {
          // The node, the same for every line of a file, is written on these lines only.
          body += ",\"v\":2,\"p\":\"" + prev + "\"" + node_field;
        }
        body += ",\"t\":" + std::to_string(entry->time) + "," + entry->fields;
        // The last line of the batch gets the MAC (in the token); the ones before it a SHA-256
        // that is not stored: the MAC covers them through the chain.
        const bool last = i + 1 == batch.size();
        const Bytes msg = V2Message(link, body);
        auto next = last ? MacInToken(token_, msg) : crypto::Sha256(msg);
        if (!next.ok()) {
          result = Unavailable("audit: " + next.status().message());
          break;
        }
        link = std::move(next).value();
        lines += body;
        if (last) {
          link.resize(kV2MacBytes);
          prev = crypto::Base64UrlEncode(link);
          lines += kV2MacField;
          lines += prev;
          lines += "\"";
        }
        lines += "}\n";
        ++seq;
      }
    };
    if (result.ok() && rotate) {
      build(true);
    }
    if (result.ok() && rotate) {
      // The new segment (O_EXCL: never someone else's file), its directory entry and the batch
      // are durable before any of it is acknowledged; on failure it is removed again and the
      // chain goes on in the old segment.
      const std::string next_path = segments_.directory + "/" + next_name;
      int nfd = ::open(next_path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      if (nfd < 0) {
        result = Unavailable("cannot create the audit segment " + next_path + ": " +
                             std::strerror(errno));
      } else {
        result = WriteAll(nfd, lines);
        if (result.ok() && ::fdatasync(nfd) != 0) {
          result =
              Unavailable(std::string("audit segment fdatasync failed: ") + std::strerror(errno));
        }
        if (result.ok()) {
          result = SyncDir(segments_.directory);
        }
        if (!result.ok()) {
          ::close(nfd);
          if (::unlink(next_path.c_str()) != 0 || !SyncDir(segments_.directory).ok()) {
            broken_ = true;  // a segment holding unacknowledged lines may be left: stop
          }
        } else {
          std::lock_guard fl(file_mu_);
          if (fd_ >= 0) {
            ::close(fd_);  // every batch written to it was fdatasync'd
          }
          fd_ = nfd;
          segment_index_ = next_index;
          segment_name_ = next_name;
          segment_bytes_ = lines.size();
          segment_opened_ = now_s;
          new_segment_requested_ = false;
          need_prev_ = false;
          std::lock_guard lock(mu_);
          path_ = next_path;
        }
      }
    } else if (result.ok()) {
      std::lock_guard fl(file_mu_);  // Reopen() swaps the file only between batches
      build(need_prev_);
      struct stat st {};
      const bool sized = ::fstat(fd_, &st) == 0;  // the end of the last durable line
      if (result.ok()) {
        result = WriteAll(fd_, lines);
      }
      if (result.ok() && ::fdatasync(fd_) != 0) {
        result = Unavailable(std::string("audit log fdatasync failed: ") + std::strerror(errno));
      }
      if (result.ok()) {
        segment_bytes_ += lines.size();
        need_prev_ = false;
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
      if (segments_.copy_line) {
        std::string_view rest = lines;
        for (size_t nl = rest.find('\n'); nl != std::string_view::npos; nl = rest.find('\n')) {
          segments_.copy_line(rest.substr(0, nl));
          rest.remove_prefix(nl + 1);
        }
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
  Bytes last_link(kMacHexChars / 2, 0);   // the link the next line continues
  bool seen_v2 = false;                   // format 2 never goes back to format 1
  std::optional<std::string> chain_node;  // the node the chain's first line names
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
      auto head = ParseLine(line);
      if (!head.ok()) {
        bad(line_no, head.status().message());
        break;
      }
      if (head->format == 1 && seen_v2) {
        bad(line_no,
            "a format-1 line after format-2 lines (the trail never goes back to format "
            "1: the line was rewritten)");
        break;
      }
      if (head->format == 2 && !seen_v2 && report.first_seq != 0 && !head->prev) {
        bad(line_no,
            "the first format-2 line does not name the link it continues (\"v\":2, "
            "\"p\"): lines were removed or rewritten at the switch");
        break;
      }
      // Format 1 names the node on every line, format 2 on the lines that name "p".
      if (head->format == 1 || head->prev) {
        const std::string node = head->fields.value("node", std::string());
        if (!chain_node) {
          chain_node = node;
        } else if (node != *chain_node) {
          bad(line_no, "names node \"" + node + "\" in a chain of node \"" + *chain_node +
                           "\" (lines of another node's chain were moved in)");
          break;
        }
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
          if (!head->prev) {
            bad(line_no,
                "starts in the middle of the chain without naming the link it "
                "continues (\"p\"): it was cut at the start");
            break;
          }
          auto start = LinkBytes(*head->prev);  // the line it links to is not here to check
          if (!start.ok()) {
            bad(line_no, "malformed link to the line before it");
            break;
          }
          last_link = std::move(start).value();
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
      if (head->prev) {
        auto named = LinkBytes(*head->prev);
        if (!named.ok() || *named != last_link) {
          bad(line_no, line_no == 1 && report.lines > 1
                           ? "does not chain to the last line of the file before it (a file or "
                             "lines are missing, or the files are not in order)"
                           : "does not chain to the line before it (a line was removed, edited "
                             "or re-ordered)");
          break;
        }
      }
      Bytes link;
      if (head->mac || head->format == 1) {
        auto stored = LinkBytes(head->link);
        if (!stored.ok() || (head->format == 1 && stored->size() != kMacHexChars / 2)) {
          bad(line_no, "malformed mac or sha");
          break;
        }
        link = std::move(stored).value();
      }
      if (run_start == 0) {
        run_start = line_no;
      }
      if (head->format == 2) {
        seen_v2 = true;
        const Bytes msg = V2Message(last_link, head->body);
        if (head->mac) {
          OTD_ASSIGN_OR_RETURN(Bytes mac, s.Sign(AuditKey(), msg));
          mac.resize(kV2MacBytes);
          if (!ConstantTimeEquals(mac, link)) {
            bad(run_start,
                "MAC of line " + std::to_string(line_no) + " does not verify" + covered());
            break;
          }
          report.last_mac = std::string(head->link);
          run_start = 0;
        } else {
          OTD_ASSIGN_OR_RETURN(link, crypto::Sha256(msg));
        }
      } else if (head->mac) {
        OTD_ASSIGN_OR_RETURN(bool ok, s.Verify(AuditKey(), AsBytes(head->body), link));
        if (!ok) {
          bad(run_start, "MAC of line " + std::to_string(line_no) + " does not verify" + covered());
          break;
        }
        report.last_mac = std::string(head->link);
        run_start = 0;
      } else {
        OTD_ASSIGN_OR_RETURN(Bytes sha, crypto::Sha256(AsBytes(head->body)));
        if (sha != link) {
          bad(line_no, "SHA-256 does not match (the line was edited)");
          break;
        }
      }
      last_link = std::move(link);
      report.last_seq = head->seq;
      if (visit) {
        visit(head->seq, head->fields, head->link, head->mac);
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
  auto parsed = ParseLine(line);
  if (!parsed.ok()) {
    return {"", 0};
  }
  try {
    return {parsed->fields.value("node", std::string()), parsed->seq};
  } catch (const std::exception&) {
    return {"", 0};
  }
}

struct SegmentLine {
  uint64_t seq = 0;
  std::string prev;
  std::string event;
  std::string detail;
};

Result<SegmentLine> ParseSegmentLine(std::string_view line) {
  OTD_ASSIGN_OR_RETURN(ParsedLine parsed, ParseLine(line));
  try {
    const auto& j = parsed.fields;
    return SegmentLine{parsed.seq, parsed.prev.value_or(std::string()),
                       j.value("event", std::string()), j.value("detail", std::string())};
  } catch (const std::exception&) {
    return DataLoss("malformed JSON");
  }
}

Result<SegmentLine> FirstSegmentLine(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string line;
  if (!in || !std::getline(in, line) || in.eof()) {
    return DataLoss("no complete first line");
  }
  return ParseSegmentLine(line);
}

// The last complete line of a file.
Result<SegmentLine> LastSegmentLine(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) {
    return NotFound("cannot read " + path);
  }
  const std::streamoff size = in.tellg();
  const std::streamoff window = std::min<std::streamoff>(size, 256 * 1024);
  std::string tail(static_cast<size_t>(window), '\0');
  in.seekg(size - window);
  in.read(tail.data(), window);
  const size_t end = tail.rfind('\n');
  if (end == std::string::npos) {
    return DataLoss("no complete line");
  }
  const size_t start = end == 0 ? std::string::npos : tail.rfind('\n', end - 1);
  const size_t from = start == std::string::npos ? 0 : start + 1;
  return ParseSegmentLine(std::string_view(tail).substr(from, end - from));
}

// The value of `key=` in a header's detail ("" when absent).
std::string DetailValue(const std::string& detail, std::string_view key) {
  const std::string needle = std::string(key) + "=";
  size_t at = 0;
  while ((at = detail.find(needle, at)) != std::string::npos) {
    if (at == 0 || detail[at - 1] == ' ') {
      const size_t from = at + needle.size();
      const size_t to = detail.find(' ', from);
      return detail.substr(from, to == std::string::npos ? std::string::npos : to - from);
    }
    at += needle.size();
  }
  return "";
}

constexpr std::string_view kCheckpointDomain = "otd-audit-checkpoint-v1\n";

struct Checkpoint {
  std::string node;
  uint64_t segment = 0;
  std::string file;
  uint64_t first_seq = 0;
  std::string prev;
};

// Reads and checks a checkpoint file (MAC'd with the audit key, see WriteAuditCheckpoint).
Result<Checkpoint> ReadCheckpoint(const std::string& path, hsm::Session& s) {
  std::ifstream in(path, std::ios::binary);
  std::string line;
  if (!in || !std::getline(in, line)) {
    return DataLoss("cannot read the checkpoint " + path);
  }
  auto split = SplitLine(line);
  if (!split.ok() || !split->mac) {
    return DataLoss("the checkpoint " + path + " is malformed");
  }
  auto mac = crypto::HexDecode(split->link);
  if (!mac.ok()) {
    return DataLoss("the checkpoint " + path + " is malformed");
  }
  std::string signed_part(kCheckpointDomain);
  signed_part += split->body;
  OTD_ASSIGN_OR_RETURN(bool ok, s.Verify(AuditKey(), AsBytes(signed_part), *mac));
  if (!ok) {
    return DataLoss("the MAC of the checkpoint " + path +
                    " does not verify (the checkpoint was edited or forged)");
  }
  try {
    auto j = nlohmann::json::parse(std::string(split->body) + "}");
    return Checkpoint{j.at("node").get<std::string>(), j.at("segment").get<uint64_t>(),
                      j.at("file").get<std::string>(), j.at("first_seq").get<uint64_t>(),
                      j.at("prev").get<std::string>()};
  } catch (const std::exception&) {
    return DataLoss("the checkpoint " + path + " is malformed");
  }
}

// The segment checks of one node's segments in `dir` (see VerifyAuditTrail): the files to verify
// as its chain, in order, whether the chain starts at a checkpoint, and what is wrong.
struct SegmentPlan {
  std::vector<std::string> files;
  bool from_checkpoint = false;
  std::vector<std::string> problems;
};

Result<SegmentPlan> PlanSegments(const std::string& dir, const std::string& node,
                                 hsm::Token& token) {
  SegmentPlan plan;
  auto segs = ListSegments(dir, node);
  const std::string who = node.empty() ? std::string() : "node " + node + ": ";
  auto problem = [&](const std::string& p) { plan.problems.push_back(who + p); };
  uint64_t start = 1;
  std::optional<Checkpoint> cp;
  const std::string cp_path = dir + "/" + AuditCheckpointFileName(node);
  std::error_code ec;
  if (std::filesystem::exists(cp_path, ec)) {
    OTD_ASSIGN_OR_RETURN(hsm::Session s, token.Acquire());
    auto c = ReadCheckpoint(cp_path, s);
    if (!c.ok()) {
      if (c.status().code() != Code::kDataLoss) {
        return c.status();
      }
      problem(c.status().message());
    } else if (c->node != node) {
      problem("the checkpoint " + cp_path + " is for node " + c->node);
    } else {
      cp = *c;
      start = c->segment;
      plan.from_checkpoint = true;
    }
  }
  std::erase_if(segs, [&](const auto& sg) { return sg.first.index < start; });
  if (segs.empty()) {
    problem("no audit segment in " + dir +
            (cp ? " from the checkpoint's " + cp->file + " on" : std::string()));
    return plan;
  }
  if (segs.front().first.index != start) {
    if (cp) {
      problem("segment " + cp->file +
              ", where the checkpoint says the kept history starts, is missing");
    } else {
      problem("segments " + IndexText(1) + ".." + IndexText(segs.front().first.index - 1) +
              " before " + segs.front().second +
              " are missing (removed without `opentoken-admin audit-prune`, which leaves a "
              "checkpoint)");
    }
  }
  for (size_t i = 0; i < segs.size(); ++i) {
    const auto& [name, file] = segs[i];
    const std::string path = dir + "/" + file;
    if (name.gz) {
      problem("segment " + file +
              " is compressed: gunzip it before audit-verify (or verify a gunzipped copy of the "
              "directory)");
      continue;
    }
    plan.files.push_back(path);
    if (i == 0 && cp) {
      auto first = FirstSegmentLine(path);
      if (first.ok() && (first->seq != cp->first_seq || first->prev != cp->prev)) {
        problem("segment " + file + " does not start where the checkpoint says (seq " +
                std::to_string(cp->first_seq) + "): it was replaced");
      }
    }
    if (i == 0) {
      continue;
    }
    const auto& [pname, pfile] = segs[i - 1];
    if (name.index != pname.index + 1) {
      problem(name.index == pname.index + 2
                  ? "segment " + IndexText(pname.index + 1) + " (between " + pfile + " and " +
                        file + ") is missing"
                  : "segments " + IndexText(pname.index + 1) + ".." + IndexText(name.index - 1) +
                        " (between " + pfile + " and " + file + ") are missing");
      continue;
    }
    if (pname.gz) {
      continue;
    }
    auto header = FirstSegmentLine(path);
    if (!header.ok() || header->event != "audit_segment") {
      problem("segment " + file +
              " does not start with a segment header (it was cut at the start or replaced)");
      continue;
    }
    const std::string prev_name = DetailValue(header->detail, "prev");
    const std::string prev_last = DetailValue(header->detail, "prev_last_seq");
    if (prev_name != pfile) {
      problem("segment " + file + " names " + (prev_name.empty() ? "no segment" : prev_name) +
              " as the one before it, not " + pfile);
      continue;
    }
    auto last = LastSegmentLine(dir + "/" + pfile);
    if (!last.ok() || std::to_string(last->seq) != prev_last) {
      const bool shorter =
          !last.ok() || (AllDigits(prev_last) && last->seq < std::stoull(prev_last));
      const std::string ends = last.ok() ? "it ends at seq " + std::to_string(last->seq)
                                         : std::string("it has no complete line");
      problem("segment " + pfile + (shorter ? " is truncated: " : " was extended: ") + ends +
              ", but the header of " + file + " says its last line is seq " + prev_last);
    }
  }
  return plan;
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
  AuditTrailReport out;
  std::map<std::string, std::vector<std::pair<uint64_t, std::string>>> by_node;
  std::vector<std::string> order;
  std::map<std::string, bool> segment_nodes;  // node -> its chain starts at a checkpoint
  auto add_file = [&](const std::string& f) {
    files.push_back(f);
    auto [node, seq] = FirstLineOf(f);
    if (!by_node.contains(node)) {
      order.push_back(node);
    }
    by_node[node].emplace_back(seq, f);
  };
  for (const std::string& p : paths) {
    std::error_code ec;
    if (!std::filesystem::is_directory(p, ec)) {
      add_file(p);
      continue;
    }
    std::vector<std::string> in_dir;
    std::set<std::string> nodes;  // nodes with segments here
    for (const auto& e : std::filesystem::directory_iterator(p, ec)) {
      if (e.is_regular_file(ec)) {
        in_dir.push_back(e.path().string());
        if (auto n = ParseAuditSegmentName(e.path().filename().string())) {
          nodes.insert(n->node);
        }
      }
    }
    if (nodes.empty()) {
      std::sort(in_dir.begin(), in_dir.end());
      for (const std::string& f : in_dir) {
        add_file(f);
      }
      continue;
    }
    // A directory of segments: its segments only, per node in index order.
    for (const std::string& node : nodes) {
      OTD_ASSIGN_OR_RETURN(SegmentPlan plan, PlanSegments(p, node, token));
      out.problems.insert(out.problems.end(), plan.problems.begin(), plan.problems.end());
      if (plan.files.empty() || by_node.contains(node)) {
        continue;
      }
      order.push_back(node);
      segment_nodes[node] = plan.from_checkpoint;
      for (const std::string& f : plan.files) {
        by_node[node].emplace_back(0, f);
        files.push_back(f);
      }
    }
  }
  if (files.empty() && out.problems.empty()) {
    return InvalidArgument("no audit log to verify");
  }
  // Grouped by node, in the order the nodes first appear; a node's files by their first seq
  // (segments: in index order).
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
    const auto seg = segment_nodes.find(node);
    if (!node.empty() && seg == segment_nodes.end()) {
      std::stable_sort(group.begin(), group.end(),
                       [](const auto& a, const auto& b) { return a.first < b.first; });
    }
    AuditChainReport chain;
    chain.node = node;
    for (const auto& g : group) {
      chain.files.push_back(g.second);
    }
    auto& seqs = macs[node];
    auto visit = [&](uint64_t seq, const nlohmann::json& j, std::string_view link, bool mac) {
      if (mac) {
        seqs[seq] = std::string(link);
      }
      try {
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
    OTD_ASSIGN_OR_RETURN(chain.report,
                         VerifyAuditLogs(
                             chain.files, token,
                             [&](uint64_t done, uint64_t) {
                               if (progress) {
                                 progress(std::min(base + done, total), total);
                               }
                             },
                             partial || (seg != segment_nodes.end() && seg->second), visit));
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

Status WriteAuditCheckpoint(const std::string& dir, const std::string& first_segment,
                            hsm::Token& token, Clock& clock) {
  auto name = ParseAuditSegmentName(first_segment);
  if (!name || name->gz) {
    return InvalidArgument(first_segment + " is not the name of an (uncompressed) audit segment");
  }
  const std::string path = dir + "/" + first_segment;
  auto first = FirstSegmentLine(path);
  if (!first.ok()) {
    return FailedPrecondition("cannot read the first line of " + path + ": " +
                              first.status().message());
  }
  std::string body = "{\"node\":\"" + name->node + "\",\"segment\":" + std::to_string(name->index) +
                     ",\"file\":\"" + first_segment +
                     "\",\"first_seq\":" + std::to_string(first->seq) + ",\"prev\":\"" +
                     SafeText(first->prev) + "\",\"time\":\"" + IsoUtc(clock.NowSeconds()) + "\"";
  std::string signed_part(kCheckpointDomain);
  signed_part += body;
  OTD_ASSIGN_OR_RETURN(Bytes mac, MacInToken(token, AsBytes(signed_part)));
  const std::string line = body + std::string(kMacField) + crypto::HexEncode(mac) + "\"}\n";
  const std::string target = dir + "/" + AuditCheckpointFileName(name->node);
  const std::string tmp = target + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Unavailable("cannot create " + tmp + ": " + std::strerror(errno));
  }
  Status w = WriteAll(fd, line);
  const bool synced = w.ok() && ::fsync(fd) == 0;
  ::close(fd);
  if (!synced || ::rename(tmp.c_str(), target.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return Unavailable("cannot write " + target);
  }
  return SyncDir(dir);
}

Result<std::string> ExpandAuditLine(std::string_view line, std::string* node) {
  OTD_ASSIGN_OR_RETURN(ParsedLine parsed, ParseLine(line));
  const bool names_node = parsed.format == 1 || parsed.prev;
  if (node != nullptr && names_node) {
    *node = parsed.fields.value("node", std::string());
  }
  if (parsed.format == 1) {
    return std::string(line);
  }
  try {
    // The same mapping as ExpandV2, in the line's own order.
    auto j = nlohmann::ordered_json::parse(std::string(parsed.body) + "}");
    nlohmann::ordered_json out;
    out["seq"] = parsed.seq;
    out["format"] = 2;
    if (!names_node && node != nullptr && !node->empty()) {
      out["node"] = *node;  // from the line of this file that named it
    }
    for (const auto& [k, v] : j.items()) {
      nlohmann::json one = ExpandV2(nlohmann::json{{k, nlohmann::json(v)}});
      for (const auto& [name, value] : one.items()) {
        if (name != "seq" && name != "format") {
          out[name] = value;
        }
      }
    }
    if (parsed.mac) {
      out["mac"] = std::string(parsed.link);
    }
    return out.dump();
  } catch (const std::exception&) {
    return DataLoss("malformed JSON");
  }
}

Result<AuditVerifyReport> VerifyAuditLog(const std::string& path, hsm::Token& token,
                                         const std::function<void(uint64_t, uint64_t)>& progress) {
  return VerifyAuditLogs({path}, token, progress, /*partial=*/false);
}

}  // namespace otd::service
