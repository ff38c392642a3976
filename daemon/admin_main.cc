// opentoken-admin: operator commands. Exit codes: 0 ok, 64 usage, 69 HSM/store unusable,
// 78 bad configuration, 1 the command ran and found a problem.

#include <fcntl.h>
#include <unistd.h>
#include <algorithm>
#include <cstdlib>
#include <openssl/evp.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <tuple>
#include <vector>
#include <nlohmann/json.hpp>

#include "common/build_info.h"
#include "common/log.h"
#include "daemon/config.h"
#include "daemon/hardening.h"
#include "daemon/migrate.h"
#include "daemon/runtime.h"
#include "daemon/status_client.h"
#include "service/audit.h"
#include "service/maintenance.h"
#include "store/pg_store.h"

namespace otd::daemon {
namespace {

// One entry per command: what `opentoken-admin --help` and `opentoken-admin COMMAND --help` print.
struct CommandInfo {
  const char* name;
  const char* operand;  // "DIR" or ""
  const char* summary;
  const char* help;
};

constexpr CommandInfo kCommands[] = {
    {"init", "", "create the token keys (KEK, index key) if absent; idempotent",
     "Creates the version-1 key-encryption key and index key in the token and the system data\n"
     "key in the store, if absent, and records in the store which token keys it belongs to.\n"
     "Running it again creates nothing. Exit 0 when done.\n"
     "Refuses (exit 69, naming storage.path and the token) to create keys for a store whose\n"
     "keys the token does not hold (the wrong token: its records would stay unreadable), and to\n"
     "start an empty store when the token already holds the keys of a vault (storage.path is\n"
     "probably wrong); --new-store starts a second, separate store on those keys anyway.\n"
     "With storage.backend \"postgresql\" it first creates or upgrades the database schema\n"
     "(versioned migrations, idempotent; run it as the schema owner's role); --grant-to ROLE\n"
     "then gives ROLE (the daemon's role) only SELECT/INSERT/UPDATE/DELETE on the records and\n"
     "EXECUTE on the group-commit function.\n"},
    {"status", "", "ask the running daemon whether it is healthy (no PIN needed)",
     "Asks the running daemon (GET /status on its metrics socket, metrics.unix.path; the\n"
     "socket's file mode decides who may ask) for its health (token, store, keys), version,\n"
     "uptime, node id, key versions and listeners. Opens neither the token nor the store.\n"
     "--format json prints the daemon's answer as JSON (always with \"status\": healthy,\n"
     "unhealthy, not-running or unknown); --format text (the default) a summary.\n"
     "Exit codes (stable, for scripts and monitoring): 0 healthy, 1 unhealthy, 2 not running\n"
     "(nothing listens on the metrics socket), 3 cannot tell (metrics disabled, permission\n"
     "denied, no or a malformed answer within 5 s), 64 usage, 78 bad configuration.\n"},
    {"inspect", "", "token, key versions and attributes, records per table and per key version",
     "Shows the token (module, label, serial), health, the current key versions and their\n"
     "attributes (sensitive, non-extractable), the store's tables, and how many stored things\n"
     "refer to each key version (what keeps an old version alive). Exit 1 when unhealthy.\n"},
    {"rotate-keys", "", "new KEK and index key versions, then rewrap data keys (with progress)",
     "Creates the next versions of the key-encryption key and the index key in the token and\n"
     "makes them current: new data keys are wrapped by the new KEK and new records are keyed by\n"
     "the new index key, within 5 seconds in a running daemon (no restart, no downtime). Then\n"
     "runs `rewrap` (skip with --no-rewrap). Resumable: after a crash, run it again; keys made\n"
     "by the interrupted run are reused, not duplicated.\n"
     "Old versions stay in the token: records keyed by an older index key remain readable\n"
     "(lookups try every live version) and access-code secrets move to the new KEK when first\n"
     "used. `inspect` shows what still refers to each old version.\n"},
    {"rewrap", "", "move data keys wrapped by an older KEK to the current KEK (resumable)",
     "Re-wraps every data key wrapped by an older KEK under the current KEK, inside the token\n"
     "(the key never leaves it), one compare-and-swap per key: safe while the daemon serves, and\n"
     "resumable (it only touches what is still old). Progress on stderr.\n"},
    {"verify", "", "check every record and that every wrapped data key unwraps (progress)",
     "Checks that every stored value is a well-formed versioned record, that every store key is\n"
     "an index-key HMAC, and that every wrapped data key unwraps under its KEK version in the\n"
     "token; counts per key version. Exit 1 when a problem is found.\n"},
    {"audit-verify", "", "check the audit trail's hash chain and MACs in the token (progress)",
     "Reads the audit log (audit.path, default <storage.path>/audit.log) and checks every line:\n"
     "sequence numbers without gaps, each line chained to the one before it, and each batch's\n"
     "HMAC verified inside the token with the audit key. A deleted, edited, inserted or\n"
     "re-ordered line is reported with its file and line number (the first line of the batch\n"
     "whose MAC fails; exit 1). Lines of format 1 (before issue 20) and 2 are both read, and a\n"
     "trail that switches from 1 to 2 at an upgrade. Safe while the daemon writes.\n"
     "After a rotation (the file moved away, then SIGHUP: the chain continues in the new file)\n"
     "give the files oldest first, e.g. `audit-verify audit.log.2 audit.log.1 audit.log`; they\n"
     "are checked as one chain. --partial lets the first file start in the middle of the chain\n"
     "(older files deleted): the lines before it cannot be checked then.\n"
     "Several daemons on one store (audit.node_id): give every node's files, or directories\n"
     "holding them; each node's chain is checked, then every anchor line: a node's file that\n"
     "ends before a line another node anchored is reported as truncated, a node named by an\n"
     "anchor but not given as missing (exit 1).\n"
     "Segments (audit.directory): give the directory (the default then); every node's segments\n"
     "are checked in index order as one chain, and a missing segment (a gap in the indexes), a\n"
     "truncated one (ends before the seq the next segment's header names) or an altered one is\n"
     "named. Compressed segments (.log.gz) must be gunzipped first. A checkpoint written by\n"
     "audit-prune says where the kept history starts.\n"},
    {"audit-show", "", "print the audit trail with full field names (no token needed)",
     "audit-show [FILE|DIR...]: prints every line of the audit trail (default: audit.directory\n"
     "or audit.path) as one JSON object per line with full field names: seq, format, node,\n"
     "time (2026-12-06T09:30:00Z), event, outcome, status, account and object (keyed hashes, in\n"
     "hex as format 1 wrote them, so entries match across the switch), detail, heads (anchors),\n"
     "prev (the link a file's first line continues) and mac. Format-1 lines are printed as they\n"
     "are. A directory: its segments, per node in index order. Checks nothing: audit-verify\n"
     "does. Exit 1 when a line is not an audit line (printed as it is, named on stderr).\n"},
    {"audit-prune", "", "remove audit segments before a given one, leaving a signed checkpoint",
     "audit-prune --before SEGMENT [--move-to DIR]: checks the segment directory (as\n"
     "audit-verify), then writes audit-checkpoint[-NODE].json (MAC'd in the token with the audit\n"
     "key: the kept history starts at SEGMENT, its first seq and link) and removes that node's\n"
     "segments before SEGMENT (or moves them into DIR, e.g. to ship them). audit-verify then\n"
     "passes on what is left; a segment removed without a checkpoint is reported. SEGMENT is a\n"
     "file name in audit.directory or a path to one. Refused (exit 1) when audit-verify fails.\n"},
    {"check-config", "", "check the config file against the loader and schema/config.json",
     "Loads the config the way the daemon does (strict JSON, duplicate keys refused, range\n"
     "checks, schema/config.json) without opening the token or the store, and says what is\n"
     "wrong, naming the key. Exit 0 valid, 78 invalid or unreadable.\n"},
    {"purge-expired", "", "delete expired records now (the daemon does this every minute)",
     "Deletes every record whose expiry has passed, in batches of 10,000. Safe while serving.\n"},
    {"backup", "DIR", "consistent compacted hot copy of the store with a manifest",
     "Writes a consistent, compacted copy of the store into DIR (which must be empty or absent)\n"
     "with manifest.json (key versions, records per table, SHA-256). Safe while serving.\n"
     "The keys stay in the HSM: back the token up with the HSM vendor's tools (SoftHSM2: copy\n"
     "its token directory while no process writes to it). Exit 1 when DIR is not empty.\n"},
    {"restore", "DIR", "copy a backup into an empty storage.path (checks the manifest)",
     "Copies DIR/data.mdb into storage.path, which must be empty or absent, after checking it\n"
     "against DIR/manifest.json (SHA-256). Run `verify` with the same token afterwards. Exit 1\n"
     "when the target is not empty or the backup does not match its manifest.\n"},
    {"migrate", "", "copy the vault into the store of another config (LMDB <-> PostgreSQL)",
     "Copies every record of the store of --config into the store of --to-config NEW.json\n"
     "(LMDB to PostgreSQL or back), byte for byte with its expiry: records stay sealed and are\n"
     "never opened. Then verifies every (table, key, value, expiry) in the target. Both configs\n"
     "must name the same token; the target must be empty (--allow-non-empty: overwrite what is\n"
     "there) and must not hold another vault. Stop the daemon first: with LMDB it is detected\n"
     "(<storage.path>/serve.lock); with PostgreSQL it is not (stop every node). For a\n"
     "PostgreSQL target the schema is created when absent (run it as the schema owner; then\n"
     "`opentoken-admin init --config NEW.json --grant-to ROLE` grants the daemon's role).\n"
     "Exit 0 copied and verified; 1 refused or verify found mismatches; 64 usage; 69 a store\n"
     "or the token unusable; 78 bad configuration.\n"},
};

const CommandInfo* FindCommand(const std::string& name) {
  for (const auto& c : kCommands) {
    if (name == c.name) {
      return &c;
    }
  }
  return nullptr;
}

std::string Usage() {
  std::string out =
      "usage: opentoken-admin COMMAND [ARGS] [--config FILE]\n"
      "       opentoken-admin COMMAND --help\n"
      "       opentoken-admin --version\n\ncommands:\n";
  for (const auto& c : kCommands) {
    std::string head = std::string(c.name) + (c.operand[0] ? std::string(" ") + c.operand : "");
    head.resize(std::max<size_t>(head.size() + 1, 16), ' ');
    out += "  " + head + c.summary + "\n";
  }
  out +=
      "\nconfig: --config FILE (or --config=FILE), else $OPENTOKEND_CONFIG, else\n"
      "/etc/opentokend/opentokend.json\n"
      "\nexit codes: 0 ok, 1 the command found a problem, 64 usage, 69 HSM or store unusable,\n"
      "78 bad configuration\n";
  return out;
}

std::string CommandHelp(const CommandInfo& c) {
  std::string out = std::string("usage: opentoken-admin ") + c.name +
                    (c.operand[0] ? std::string(" ") + c.operand : "") + " [--config FILE]";
  if (std::string(c.name) == "rotate-keys") {
    out += " [--no-rewrap]";
  } else if (std::string(c.name) == "init") {
    out += " [--new-store]";
  } else if (std::string(c.name) == "migrate") {
    out += " --to-config NEW.json [--allow-non-empty]";
  } else if (std::string(c.name) == "audit-verify") {
    out += " [--partial] [FILE|DIR...]";
  } else if (std::string(c.name) == "audit-show") {
    out += " [FILE|DIR...]";
  } else if (std::string(c.name) == "audit-prune") {
    out += " --before SEGMENT [--move-to DIR]";
  } else if (std::string(c.name) == "status") {
    out += " [--format json|text]";
  }
  out += "\n\n" + std::string(c.help) +
         "\nexit codes: 0 ok, 1 problem found, 64 usage, 69 HSM or store unusable, 78 bad config\n";
  return out;
}

// Progress of long work on stderr: a bar redrawn in place on a terminal, a line every 10 % (and
// at the end) otherwise, so logs stay readable.
class Progress {
 public:
  explicit Progress(std::string what) : what_(std::move(what)), tty_(::isatty(2) == 1) {}
  void Update(uint64_t done, uint64_t total) {
    if (total == 0) {
      return;
    }
    const unsigned pct = static_cast<unsigned>(done * 100 / total);
    if (tty_) {
      constexpr unsigned kWidth = 30;
      std::string bar(pct * kWidth / 100, '#');
      bar.resize(kWidth, '.');
      std::cerr << "\r" << what_ << " [" << bar << "] " << done << "/" << total << " (" << pct
                << "%)" << (done == total ? "\n" : "") << std::flush;
    } else if (pct / 10 != last_decile_ || done == total) {
      if (done == total && printed_end_) {
        return;
      }
      last_decile_ = pct / 10;
      printed_end_ = done == total;
      std::cerr << what_ << ": " << done << "/" << total << " (" << pct << "%)\n";
    }
  }

 private:
  std::string what_;
  bool tty_;
  unsigned last_decile_ = 0;
  bool printed_end_ = false;
};

// SHA-256 of a file, streamed.
Result<std::string> FileSha256(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Unavailable("cannot read " + path);
  }
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    EVP_DigestUpdate(ctx, buf.data(), static_cast<size_t>(in.gcount()));
  }
  unsigned char md[32];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return out;
}

bool EmptyOrAbsent(const std::string& dir) {
  std::error_code ec;
  return !std::filesystem::exists(dir, ec) || std::filesystem::is_empty(dir, ec);
}

// storage.path may already hold the audit trail (it is not part of a backup and continues across
// a restore) and the daemon's serve.lock (daemon/migrate.h); anything else makes it non-empty.
bool StorageEmptyOrAbsent(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) {
    return true;
  }
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.path().filename() != "audit.log" && e.path().filename() != "serve.lock") {
      return false;
    }
  }
  return !ec;
}

int Fail(const Status& s) {
  std::cerr << "opentoken-admin: " << s.message() << "\n";
  return ExitCodeFor(s);
}

// The PostgreSQL schema: created or upgraded before the store is opened (Open refuses a missing
// or older schema).
int MigratePg(const Config& config, const std::string& grant_to) {
  auto options = PgOptionsFrom(config);
  if (!options.ok()) {
    return Fail(options.status());
  }
  auto before = store::PgMigrate(*options, grant_to);
  if (!before.ok()) {
    return Fail(before.status());
  }
  const int now = store::kPgSchemaVersion;
  std::cout << "PostgreSQL schema: "
            << (*before == 0    ? "created, version " + std::to_string(now)
                : *before < now ? "upgraded from version " + std::to_string(*before) + " to " +
                                      std::to_string(now)
                                : "up to date, version " + std::to_string(now))
            << (grant_to.empty() ? "" : "; privileges granted to " + grant_to) << "\n";
  return kExitOk;
}

int Init(Runtime& rt, const Config& config, bool new_store) {
  auto report =
      rt.vault->keys().InitKeys({.store_path = config.storage_path, .new_store = new_store});
  if (!report.ok()) {
    return Fail(report.status());
  }
  std::cout << "key-encryption key " << service::KekLabel(report->versions.kek) << ": "
            << (report->created_kek ? "created" : "already present") << "\n"
            << "index key " << service::IndexKeyLabel(report->versions.index) << ": "
            << (report->created_index ? "created" : "already present") << "\n";
  if (auto id = rt.vault->keys().ReadIdentity(); id.ok() && id->has_value()) {
    std::cout << "store " << config.storage_path << ": "
              << (report->created_store       ? "created, "
                  : report->recorded_identity ? "identity recorded, "
                                              : "")
              << (*id)->ToString() << "\n";
  }
  return kExitOk;
}

// rotate-keys and rewrap create or change things in the token for this store: only with the
// token the store belongs to.
Status CheckStoreIdentity(Runtime& rt, const Config& config) {
  return rt.vault->keys().VerifyStoreIdentity(config.storage_path);
}

void PrintVersionCounts(const service::VersionCounts& c) {
  for (const auto& [v, n] : c.keys_per_kek_version) {
    std::cout << "data keys wrapped by " << service::KekLabel(v) << ": " << n << "\n";
  }
  for (const auto& [v, n] : c.records_per_index_version) {
    std::cout << "records keyed by " << service::IndexKeyLabel(v) << ": " << n << "\n";
  }
  for (const auto& [v, n] : c.records_per_data_key_version) {
    std::cout << "records sealed with data key version " << v << ": " << n << "\n";
  }
}

int RewrapCommand(Runtime& rt) {
  Progress bar("rewrap");
  auto p = rt.vault->keys().RewrapDataKeys(
      [&](const service::RewrapProgress& now) { bar.Update(now.done + now.skipped, now.total); });
  if (!p.ok()) {
    return Fail(p.status());
  }
  std::cout << "rewrap: " << p->done << " data keys moved to the current KEK";
  if (p->skipped > 0) {
    std::cout << ", " << p->skipped << " changed meanwhile (run rewrap again)";
  }
  std::cout << "\n";
  return p->skipped > 0 ? 1 : kExitOk;
}

int RotateKeys(Runtime& rt, bool rewrap) {
  auto r = rt.vault->keys().RotateKeys();
  if (!r.ok()) {
    return Fail(r.status());
  }
  std::cout << "key-encryption key " << service::KekLabel(r->after.kek) << ": "
            << (r->created_kek ? "created" : "already present (resumed)") << ", now current\n"
            << "index key " << service::IndexKeyLabel(r->after.index) << ": "
            << (r->created_index ? "created" : "already present (resumed)") << ", now current\n"
            << "a running daemon uses them within 5 seconds\n";
  if (!rewrap) {
    std::cout << "run `opentoken-admin rewrap` to move the data keys to the new KEK\n";
    return kExitOk;
  }
  return RewrapCommand(rt);
}

std::string AuditPath(const Config& config) {
  if (!config.audit_directory.empty()) {
    return config.audit_directory;  // segments (issue 18)
  }
  return config.audit_path.empty() ? config.storage_path + "/audit.log" : config.audit_path;
}

// audit-show (issue 20): the trail with full field names, for people and tools.
int AuditShow(const Config& config, std::vector<std::string> paths) {
  if (paths.empty()) {
    paths.push_back(AuditPath(config));
  }
  std::vector<std::string> files;
  for (const std::string& p : paths) {
    std::error_code ec;
    if (!std::filesystem::is_directory(p, ec)) {
      files.push_back(p);
      continue;
    }
    std::vector<std::tuple<std::string, uint64_t, std::string>> in_dir;  // node, index, path
    for (const auto& e : std::filesystem::directory_iterator(p, ec)) {
      if (!e.is_regular_file(ec)) {
        continue;
      }
      const std::string name = e.path().filename().string();
      if (auto n = service::ParseAuditSegmentName(name); n && !n->gz) {
        in_dir.emplace_back(n->node, n->index, e.path().string());
      } else if (name.ends_with(".log")) {
        in_dir.emplace_back("", 0, e.path().string());
      }
    }
    std::sort(in_dir.begin(), in_dir.end());
    for (const auto& f : in_dir) {
      files.push_back(std::get<2>(f));
    }
  }
  int rc = kExitOk;
  for (const std::string& f : files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) {
      std::cerr << "audit-show: cannot read " << f << "\n";
      rc = 1;
      continue;
    }
    std::string node;  // format 2 names it on a file's first line only
    uint64_t line_no = 0;
    for (std::string line; std::getline(in, line);) {
      ++line_no;
      auto shown = service::ExpandAuditLine(line, &node);
      if (!shown.ok()) {
        std::cerr << "audit-show: " << f << " line " << line_no << ": " << shown.status().message()
                  << "\n";
        std::cout << line << "\n";
        rc = 1;
        continue;
      }
      std::cout << *shown << "\n";
    }
  }
  return rc;
}

// Several nodes' chains (issue 16): one line per chain, then every cross-chain problem.
int AuditVerifyNodes(const service::AuditTrailReport& t) {
  for (const auto& c : t.chains) {
    const std::string node = c.node.empty() ? "(no node)" : c.node;
    const auto& r = c.report;
    if (!r.ok()) {
      std::cout << "audit-verify: node " << node << ": " << r.bad_file << " line "
                << r.first_bad_line << ": " << r.problem << "\n";
    } else {
      std::cout << "audit-verify: node " << node << ": ok, " << r.lines << " entries in "
                << c.files.size() << (c.files.size() > 1 ? " files" : " file") << " (seq "
                << r.first_seq << ".." << r.last_seq << ")\n";
    }
  }
  for (const std::string& p : t.problems) {
    std::cout << "audit-verify: " << p << "\n";
  }
  if (!t.ok()) {
    return 1;
  }
  std::cout << "audit-verify: ok, " << t.chains.size() << " chains, " << t.anchors << " anchors, "
            << t.heads_checked << " anchored heads match\n";
  return kExitOk;
}

int AuditVerify(Runtime& rt, const Config& config, std::vector<std::string> files, bool partial) {
  if (files.empty()) {
    files.push_back(AuditPath(config));
  }
  Progress bar("audit-verify");
  auto trail = service::VerifyAuditTrail(
      files, *rt.token, [&](uint64_t done, uint64_t total) { bar.Update(done, total); }, partial);
  if (!trail.ok()) {
    return Fail(trail.status());
  }
  if (trail->chains.size() != 1 || trail->anchors > 0 || !trail->chains[0].node.empty() ||
      !trail->problems.empty()) {
    return AuditVerifyNodes(*trail);
  }
  const service::AuditVerifyReport* r = &trail->chains[0].report;
  files = trail->chains[0].files;
  if (!r->ok()) {
    std::cout << "audit-verify: " << r->bad_file << " line " << r->first_bad_line << ": "
              << r->problem << "\n";
    return 1;
  }
  std::cout << "audit-verify: ok, " << r->lines << " entries";
  if (files.size() > 1 || r->first_seq > 1) {
    std::cout << " in " << files.size() << (files.size() > 1 ? " files" : " file") << " (seq "
              << r->first_seq << ".." << r->last_seq << ")";
  }
  std::cout << ", chain intact (last mac " << r->last_mac.substr(0, 16) << "...)\n";
  return kExitOk;
}

// audit-prune (issue 18): a checkpoint, then the segments before it go.
int AuditPrune(Runtime& rt, const Config& config, const std::string& before,
               const std::string& move_to) {
  namespace fs = std::filesystem;
  const fs::path given(before);
  const std::string dir =
      given.has_parent_path() ? given.parent_path().string() : config.audit_directory;
  const std::string first = given.filename().string();
  if (dir.empty()) {
    return Fail(InvalidArgument("audit-prune: give SEGMENT as a path, or set audit.directory"));
  }
  const auto name = service::ParseAuditSegmentName(first);
  std::error_code ec;
  if (!name || name->gz || !fs::is_regular_file(dir + "/" + first, ec)) {
    std::cout << "audit-prune: " << dir << "/" << first
              << " is not an (uncompressed) audit segment\n";
    return 1;
  }
  auto trail = service::VerifyAuditTrail({dir}, *rt.token);
  if (!trail.ok()) {
    return Fail(trail.status());
  }
  if (!trail->ok()) {
    AuditVerifyNodes(*trail);
    std::cout << "audit-prune: refused: the segments do not verify (nothing removed)\n";
    return 1;
  }
  if (Status s = service::WriteAuditCheckpoint(dir, first, *rt.token, rt.clock); !s.ok()) {
    return Fail(s);
  }
  std::cout << "audit-prune: checkpoint " << service::AuditCheckpointFileName(name->node)
            << ": the history kept starts at " << first << "\n";
  std::vector<std::string> old;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string f = e.path().filename().string();
    auto n = service::ParseAuditSegmentName(f);
    if (n && n->node == name->node && n->index < name->index) {
      old.push_back(f);
    }
  }
  std::sort(old.begin(), old.end());
  for (const std::string& f : old) {
    const std::string from = dir + "/" + f;
    if (!move_to.empty()) {
      fs::rename(from, move_to + "/" + f, ec);
      if (ec) {  // another file system: copy, then remove
        ec.clear();
        fs::copy_file(from, move_to + "/" + f, ec) && fs::remove(from, ec);
      }
    } else {
      fs::remove(from, ec);
    }
    if (ec) {
      std::cout << "audit-prune: cannot " << (move_to.empty() ? "remove " : "move ") << from << ": "
                << ec.message() << " (it is before the checkpoint: remove it by hand)\n";
      return 1;
    }
    std::cout << "audit-prune: " << (move_to.empty() ? "removed " : "moved ") << f << "\n";
  }
  return kExitOk;
}

int InspectCommand(Runtime& rt, const Config& config) {
  std::cout << "token: " << rt.token->Describe() << "\n";
  if (auto id = rt.vault->keys().ReadIdentity(); id.ok() && id->has_value()) {
    Status match = rt.vault->keys().VerifyStoreIdentity(config.storage_path, /*adopt=*/false);
    std::cout << "store: " << (*id)->ToString() << "; "
              << (match.ok() ? "the token holds its keys" : match.message()) << "\n";
  } else if (id.ok()) {
    std::cout << "store: no identity recorded yet (the next init or daemon start records it)\n";
  }
  auto health = rt.vault->keys().Health();
  std::cout << "health: " << (health.ok() ? "healthy" : "unhealthy") << "\n";
  if (!health.detail.empty()) {
    std::cout << "  " << health.detail << "\n";
  }
  auto keys = rt.vault->keys().DescribeKeys();
  if (keys.ok()) {
    for (const auto& k : *keys) {
      const auto& a = k.attributes;
      std::cout << "key " << k.label << ": sensitive=" << a.sensitive
                << " extractable=" << a.extractable << " always_sensitive=" << a.always_sensitive
                << " never_extractable=" << a.never_extractable << "\n";
    }
  } else {
    std::cout << "keys: " << keys.status().message() << "\n";
  }
  if (auto v = rt.vault->keys().CurrentVersions(); v.ok()) {
    std::cout << "current versions: kek " << v->kek << ", index " << v->index
              << " (oldest live index version " << v->index_min << ")\n";
  }
  if (auto counts = service::CountVersions(*rt.store); counts.ok()) {
    PrintVersionCounts(counts.value());
  }
  auto stats = rt.store->GetStats();
  if (stats.ok()) {
    std::cout << "store: map " << stats->map_size / (1024 * 1024) << " MiB, used "
              << stats->used_bytes / 1024 << " KiB\n";
    for (const auto& [name, t] : stats->tables) {
      std::cout << "  table " << name << ": " << t.entries << " records\n";
    }
  } else {
    std::cout << "store: " << stats.status().message() << "\n";
  }
  return health.ok() ? kExitOk : 1;
}

int Verify(Runtime& rt) {
  Progress bar("verify");
  auto report = service::VerifyStore(
      *rt.vault, *rt.store, [&](uint64_t done, uint64_t total) { bar.Update(done, total); });
  if (!report.ok()) {
    return Fail(report.status());
  }
  for (const auto& [table, n] : report->records_per_table) {
    std::cout << "table " << table << ": " << n << " records\n";
  }
  PrintVersionCounts(report->versions);
  if (report->bad > 0) {
    std::cout << "problems: " << report->bad << " (first: " << report->first_problem << ")\n";
    return 1;
  }
  std::cout << "verify: ok\n";
  return kExitOk;
}

int PurgeExpired(Runtime& rt) {
  size_t total = 0;
  for (;;) {
    auto n = rt.store->PurgeExpired(rt.clock.NowSeconds(), 10'000);
    if (!n.ok()) {
      return Fail(n.status());
    }
    total += *n;
    if (*n == 0) {
      break;
    }
    std::cerr << "purge-expired: " << total << " so far\n";
  }
  std::cout << "purged " << total << " expired records\n";
  return kExitOk;
}

int Backup(Runtime& rt, const std::string& dir) {
  if (!EmptyOrAbsent(dir)) {
    std::cerr << "opentoken-admin: backup directory " << dir << " is not empty\n";
    return 1;
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all, ec);
  auto versions = rt.vault->keys().CurrentVersions();
  if (!versions.ok()) {
    return Fail(versions.status());
  }
  if (rt.lmdb == nullptr) {
    std::cerr << "opentoken-admin: backup copies the embedded LMDB store only\n";
    return kExitUsage;
  }
  if (Status s = rt.lmdb->CopyTo(dir); !s.ok()) {
    return Fail(s);
  }
  auto sum = FileSha256(dir + "/data.mdb");
  if (!sum.ok()) {
    return Fail(sum.status());
  }
  auto stats = rt.store->GetStats();
  nlohmann::json manifest = {{"format", 1},
                             {"created", static_cast<int64_t>(rt.clock.NowSeconds())},
                             {"kek_version", versions->kek},
                             {"index_version", versions->index},
                             {"token", rt.token->Describe()},
                             {"file", "data.mdb"},
                             {"bytes", std::filesystem::file_size(dir + "/data.mdb", ec)},
                             {"sha256", *sum},
                             {"opentokend_version", GetBuildInfo().version},
                             {"opentokend_git", GetBuildInfo().git}};
  if (stats.ok()) {
    for (const auto& [name, t] : stats->tables) {
      manifest["records"][name] = t.entries;
    }
  }
  std::ofstream(dir + "/manifest.json") << manifest.dump(2) << "\n";
  std::cout << "backup written to " << dir << " (sha256 " << *sum << ")\n"
            << "note: the keys stay in the HSM; back the token up with the HSM vendor's tools\n";
  return kExitOk;
}

int Restore(const Config& config, const std::string& dir) {
  std::ifstream in(dir + "/manifest.json");
  nlohmann::json manifest;
  try {
    manifest = nlohmann::json::parse(in);
  } catch (const std::exception&) {
    std::cerr << "opentoken-admin: " << dir << "/manifest.json is missing or malformed\n";
    return 1;
  }
  if (manifest.value("format", 0) != 1 || !manifest.contains("sha256")) {
    std::cerr << "opentoken-admin: unknown backup format\n";
    return 1;
  }
  auto sum = FileSha256(dir + "/data.mdb");
  if (!sum.ok() || *sum != manifest["sha256"].get<std::string>()) {
    std::cerr << "opentoken-admin: " << dir << "/data.mdb does not match its manifest\n";
    return 1;
  }
  if (!StorageEmptyOrAbsent(config.storage_path)) {
    std::cerr << "opentoken-admin: storage.path " << config.storage_path
              << " is not empty; restore only into an empty directory\n";
    return 1;
  }
  std::error_code ec;
  std::filesystem::create_directories(config.storage_path, ec);
  std::filesystem::permissions(config.storage_path, std::filesystem::perms::owner_all, ec);
  const std::string target = config.storage_path + "/data.mdb";
  std::filesystem::copy_file(dir + "/data.mdb", target, ec);
  if (ec) {
    std::cerr << "opentoken-admin: cannot copy the backup: " << ec.message() << "\n";
    return kExitUnavailable;
  }
  std::filesystem::permissions(
      target, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write, ec);
  int fd = ::open(target.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
  std::cout << "restored " << dir << " into " << config.storage_path
            << "; run `opentoken-admin verify` with the same token before starting the daemon\n";
  return kExitOk;
}

// status: asks the running daemon (daemon/status_client.h); exit 0/1/2/3 as documented there.
int DaemonStatusCommand(const std::string& config_path, bool json) {
  auto config = LoadConfigFile(config_path);
  if (!config.ok()) {
    return Fail(config.status());
  }
  DaemonStatus s;
  if (!config->metrics.enabled) {
    s.reason =
        "metrics.enabled is false in " + config_path + ": the daemon has no metrics socket to ask";
  } else {
    s = QueryDaemonStatus(config->metrics.unix_path, 5000);
  }
  if (json) {
    std::cout << StatusJson(s).dump(2) << "\n";
  } else {
    std::cout << StatusText(s);
  }
  return static_cast<int>(s.state);
}

// check-config: the loader's verdict, without the token or the store.
int CheckConfig(const std::string& path) {
  auto config = LoadConfigFile(path);
  if (!config.ok()) {
    std::cerr << "opentoken-admin: " << path << ": " << config.status().message() << "\n";
    return kExitConfig;
  }
  std::cout << path << ": valid\n";
  return kExitOk;
}

int Main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && args[0] == "--version") {
    std::cout << VersionText("opentoken-admin");
    return kExitOk;
  }
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    (args.empty() ? std::cerr : std::cout) << Usage();
    return args.empty() ? kExitUsage : kExitOk;
  }
  const std::string command = args[0];
  const CommandInfo* info = FindCommand(command);
  if (info == nullptr) {
    std::cerr << "opentoken-admin: unknown command " << command << "\n" << Usage();
    return kExitUsage;
  }
  std::string config_path;
  std::string dir;
  bool rewrap = true;
  bool new_store = false;
  bool partial = false;
  std::string grant_to;            // init, PostgreSQL: the daemon's role
  std::vector<std::string> files;  // audit-verify
  std::string prune_before;        // audit-prune
  std::string prune_move_to;       // audit-prune
  std::string to_config;           // migrate
  bool allow_non_empty = false;    // migrate
  std::string format = "text";     // status
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--help" || args[i] == "-h") {
      std::cout << CommandHelp(*info);
      return kExitOk;
    }
    if (args[i] == "--config" && i + 1 < args.size()) {
      config_path = args[++i];
    } else if (args[i].rfind("--config=", 0) == 0 && args[i].size() > 9) {
      config_path = args[i].substr(9);
    } else if (info->operand[0] && dir.empty() && !args[i].empty() && args[i][0] != '-') {
      dir = args[i];
    } else if (command == "rotate-keys" && args[i] == "--no-rewrap") {
      rewrap = false;
    } else if (command == "init" && args[i] == "--new-store") {
      new_store = true;
    } else if (command == "init" && args[i] == "--grant-to" && i + 1 < args.size()) {
      grant_to = args[++i];
    } else if (command == "migrate" && args[i] == "--to-config" && i + 1 < args.size()) {
      to_config = args[++i];
    } else if (command == "migrate" && args[i] == "--allow-non-empty") {
      allow_non_empty = true;
    } else if (command == "audit-prune" && args[i] == "--before" && i + 1 < args.size()) {
      prune_before = args[++i];
    } else if (command == "audit-prune" && args[i] == "--move-to" && i + 1 < args.size()) {
      prune_move_to = args[++i];
    } else if (command == "status" && args[i] == "--format" && i + 1 < args.size()) {
      format = args[++i];
    } else if (command == "status" && args[i].rfind("--format=", 0) == 0) {
      format = args[i].substr(9);
    } else if (command == "audit-verify" && args[i] == "--partial") {
      partial = true;
    } else if ((command == "audit-verify" || command == "audit-show") && !args[i].empty() &&
               args[i][0] != '-') {
      files.push_back(args[i]);
    } else {
      std::cerr << "opentoken-admin " << command << ": unexpected argument " << args[i] << "\n"
                << CommandHelp(*info);
      return kExitUsage;
    }
  }
  if (info->operand[0] && dir.empty()) {
    std::cerr << "opentoken-admin: " << command << " needs a directory\n" << CommandHelp(*info);
    return kExitUsage;
  }
  config_path = ResolveConfigPath(config_path, std::getenv(kConfigEnvironmentVariable));
  if (command == "check-config") {
    return CheckConfig(config_path);
  }
  if (command == "status") {
    if (format != "json" && format != "text") {
      std::cerr << "opentoken-admin status: --format must be json or text\n" << CommandHelp(*info);
      return kExitUsage;
    }
    return DaemonStatusCommand(config_path, format == "json");
  }
  if (Status s = DisableCoreDumps(); !s.ok()) {
    return Fail(s);
  }
  auto heap = SecureHeap::Init();
  if (!heap.ok()) {
    return Fail(heap.status());
  }
  auto config = LoadConfigFile(config_path);
  if (!config.ok()) {
    return Fail(config.status());
  }
  if (config->storage_backend == "postgresql" && (command == "backup" || command == "restore")) {
    std::cerr << "opentoken-admin: " << command
              << " copies the embedded LMDB store only; with storage.backend \"postgresql\" back "
                 "up the database with pg_basebackup and WAL archiving (they hold ciphertext "
                 "only)\n";
    return kExitUsage;
  }
  if (command == "restore") {
    return Restore(*config, dir);
  }
  if (command == "audit-show") {
    return AuditShow(*config, std::move(files));
  }
  if (command == "init" && config->storage_backend == "postgresql") {
    if (int rc = MigratePg(*config, grant_to); rc != kExitOk) {
      return rc;
    }
  } else if (!grant_to.empty()) {
    std::cerr << "opentoken-admin: --grant-to needs storage.backend \"postgresql\"\n";
    return kExitUsage;
  }
  if (command == "migrate" && to_config.empty()) {
    std::cerr << "opentoken-admin: migrate needs --to-config NEW.json\n" << CommandHelp(*info);
    return kExitUsage;
  }
  std::unique_ptr<ServeLock> serve_lock;  // migrate from LMDB: no daemon may serve the source
  if (command == "migrate" && config->storage_backend == "lmdb") {
    auto l = ServeLock::Acquire(config->storage_path, /*exclusive=*/true);
    if (!l.ok()) {
      std::cerr << "opentoken-admin migrate: " << l.status().message() << "\n";
      return l.status().code() == Code::kFailedPrecondition ? 1 : kExitUnavailable;
    }
    serve_lock = std::move(l).value();
  }
  Logger log(std::cerr, LogLevel::kWarn);
  auto rt = OpenRuntime(*config, log);
  if (!rt.ok()) {
    return Fail(rt.status());
  }
  if (command == "init") {
    return Init(**rt, *config, new_store);
  }
  if (command == "verify") {
    return Verify(**rt);
  }
  if (command == "purge-expired") {
    return PurgeExpired(**rt);
  }
  if (command == "backup") {
    return Backup(**rt, dir);
  }
  if (command == "rotate-keys" || command == "rewrap") {
    if (Status s = CheckStoreIdentity(**rt, *config); !s.ok()) {
      return Fail(s);
    }
    return command == "rewrap" ? RewrapCommand(**rt) : RotateKeys(**rt, rewrap);
  }
  if (command == "migrate") {
    return RunMigrate(**rt, *config, to_config, allow_non_empty, log);
  }
  if (command == "audit-verify") {
    return AuditVerify(**rt, *config, std::move(files), partial);
  }
  if (command == "audit-prune") {
    if (prune_before.empty()) {
      std::cerr << "opentoken-admin audit-prune: --before SEGMENT is required\n"
                << CommandHelp(*info);
      return kExitUsage;
    }
    return AuditPrune(**rt, *config, prune_before, prune_move_to);
  }
  return InspectCommand(**rt, *config);
}

}  // namespace
}  // namespace otd::daemon

int main(int argc, char** argv) {
  try {
    return otd::daemon::Main(argc, argv);
  } catch (const std::exception& e) {  // a bug: nothing may throw across a module boundary
    std::cerr << "opentoken-admin: unexpected exception: " << e.what() << "\n";
  } catch (...) {
    std::cerr << "opentoken-admin: unexpected exception\n";
  }
  return otd::daemon::kExitSoftware;
}
