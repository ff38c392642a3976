#pragma once
// Audit trail (issue 8): an append-only file of JSON lines, separate from the operational log, one
// line per security event. Nothing in it is a clear identifier: accounts and objects (token ids,
// access codes, access-token ids, registration ids, session ids) appear only as a keyed hash
// computed inside the token with the audit key (HMAC-SHA256, "otd-audit-v1"), truncated to 128
// bits, so entries about the same account or token can be correlated without revealing it.
//
// Each line is chained to the one before it. Format 2 (issue 20; what the writer writes):
//
//   {"s":N,"t":1796549400,"e":"detokenize","o":"ok","c":200,"a":"<id>","i":"<id>",
//    "d":"peer=uid:0 transport=unix","m":"<mac>"}
//
// s seq, t time (Unix seconds, UTC), e event, o outcome, c status, a account, i object (keyed
// hashes, 128 bits in base64url: 22 characters), d detail, h heads (anchors), m MAC. The first
// line written into a file (a new file, a segment, a rotated file) and the first line after
// every start also hold, right after s, "v":2 (the format) and "p" (the link of the line before
// it, 64 zeros at the chain's start), then "n" (the node id, if any: the same for every line of
// a file, so written there only). `opentoken-admin audit-show` prints lines with these names
// spelled out (ExpandAuditLine).
//
// The link of a line is L(N) = H("otd-audit-v2\n" || L(N-1) || the line without its "m" field
// and closing brace), where L(N-1) is the previous line's link as bytes and H is SHA-256, or, for
// the last line of a batch, HMAC(audit key) computed in the token and truncated to 128 bits.
// Lines written in one group commit form a batch (at most 128): only its last line stores its
// link, "m" (base64url, 22 characters); the SHA-256 links of the lines before it are not stored,
// the verifier recomputes them, and the one MAC covers the batch through the chain. A file always
// ends with a MAC'd line. Deleting, editing, re-ordering or inserting a line breaks the chain at
// the next MAC, which no one without the token can forge; VerifyAuditLog() (opentoken-admin
// audit-verify) then names the first line of the batch that MAC vouches for (the line itself
// when it is alone in its batch, as every line is at low load).
//
// Format 1 (before issue 20), still verified: every line
//
//   {"seq":N[,"node":..],"time":"2026-11-23T10:00:00Z","event":..,"outcome":..,"status":..,
//    "account":"<hex>","object":"<hex>","detail":"...","prev":"<link of line N-1>","mac":"<hex>"}
//
// with "mac" = HMAC(audit key, the line up to `,"mac":`) or "sha" = SHA-256 of it, 64 hex. An
// upgraded daemon continues a format-1 chain: its first line is format 2 with "v":2 and "p" =
// the last format-1 MAC. The verifier accepts format 1, then format 2, never format 1 after
// format 2 (a rewritten line), and the first format-2 line must name "p".
//
// Durability: Record() returns after the line is written and fdatasync'd (group commit: one
// writer thread, one fdatasync for every line queued meanwhile). A caller that must fail closed
// (detokenize) answers only after Record() succeeded. A batch that fails to write is cut back off
// the file (none of it was acknowledged) and the chain goes on from the last durable line, so the
// log works again as soon as the disk does; only if the cut fails too (or the file is not a
// regular file) does it refuse every entry until a restart: a hole would look like tampering.
// What follows the last MAC'd line after a crash (a torn line, the start of a batch; never
// acknowledged) is cut off at the next open and an `audit_log_recovered` entry says so.
//
// Rotation (SIGHUP, Reopen()): the file is moved away (logrotate `create`), then Reopen() opens a
// new, empty file at the path and the chain goes on there: its first line has the next sequence
// number and links to the old file's last line (which is always MAC'd: files switch between
// batches). VerifyAuditLogs() checks the files in order as one chain; a file that starts in the
// middle of the chain verifies on its own only when told (`partial`), since the lines before it
// are not there to check. A restart with an empty file (the old one moved without a SIGHUP)
// starts a new chain at sequence number 1 instead.
//
// Segments (issue 18): with a directory instead of a path, the trail is written as a series of
// files in it, audit-[<node>-]<index:06>-<YYYYMMDDTHHMMZ>.log, index 1, 2, ... The writer closes a
// segment once it holds max_bytes (or is max_seconds old) and writes the next batch into a new
// one, created O_EXCL; the first line of every segment is a header,
//
//   {"s":N,"v":2,"p":"<the previous segment's last MAC>",...,"e":"audit_segment","o":"ok",
//    "d":"segment=42 prev=audit-000041-20261206T0930Z.log prev_last_seq=N-1"}
//
// chained like any line, so a segment removed,
// cut or swapped is named by verification (VerifyAuditTrail on the directory). A rotation is part
// of one batch: the new segment, its directory entry and the batch are durable before any line
// of it is acknowledged; a batch that fails there removes the new segment again and the chain
// goes on in the old one (nothing lost, nothing written twice). At Open() the highest segment is
// continued; one left empty by a crash mid-rotation is removed. SIGHUP (Reopen()) starts a new
// segment. An operator removes old segments with a checkpoint (WriteAuditCheckpoint: a MAC'd
// file naming the first kept segment, its first seq and link), so the rest still verifies.
//
// Several nodes (issue 16): daemons sharing one store each keep their own chain in their own
// file; with a node id the lines that name "p" carry `"n":"<id>"` (format 1: every line). A
// file's lines are one node's: the verifier checks that every line naming a node names the
// chain's. With a store, a
// node publishes its chain head (seq and MAC of its last durable line) into tables::kAuditHeads
// after its batches (asynchronously: one write in flight at a time, never on a request's path),
// and every anchor interval it writes an anchor line into its own chain,
//
//   {"s":N,"t":...,"e":"audit_anchor","o":"ok",
//    "h":[{"n":"a","s":41,"h":"<mac>"},{"n":"b","s":17,"h":"<mac>"}],"m":...}
//
// MAC'd like every line. An anchor vouches that each node named had written its chain up to that
// line; VerifyAuditTrail() checks every chain, then every anchor against the chains, so a node's
// file cut short after another node anchored its head, or a node's file left out, is reported.
// At Open() a node claims its id in the store (compare-and-swap on its head row): a head already
// published beyond this file's end means another daemon writes under this id (or this file was
// cut), and Open() refuses to start.
//
// Thread safety: thread safe.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/clock.h"
#include "common/log.h"
#include "common/status.h"
#include "hsm/hsm.h"
#include "store/store.h"

namespace otd::service {

inline constexpr std::string_view kAuditKeyLabel = "otd-audit-v1";

struct AuditEvent {
  std::string_view event;    // e.g. "detokenize", "login", "access_code_created"
  std::string_view outcome;  // "ok" or "denied" / "failed" / "not_found"
  int status = 0;            // HTTP status answered, 0 if none
  std::string_view account;  // clear account id (hashed before it is written); may be empty
  std::string_view object;   // clear object id (hashed before it is written); may be empty
  std::string_view detail;   // non-secret text, e.g. "kek=2 index=2"; [A-Za-z0-9 _.:=/-] only
};

// The identifiers of an event as the trail holds them: keyed hashes (128 bits, base64url)
// computed in the token.
// Empty when the event has no such identifier.
struct AuditIds {
  std::string account;
  std::string object;
};

// Several nodes on one store (see above). All optional: the defaults are a single node.
struct AuditNodeOptions {
  std::string node_id;              // [A-Za-z0-9._-]{1,64}; empty: lines carry no node
  store::Store* store = nullptr;    // heads published here (needs node_id); not owned
  int anchor_interval_seconds = 0;  // > 0 (needs store): an anchor line that often
};

// True when `id` is a valid node id ([A-Za-z0-9._-], 1..64 characters).
bool ValidAuditNodeId(std::string_view id);
// The node id kept in `dir`/audit-node-id, created (0600) on first use as
// "<hostname>-<8 random hex digits>": stable across restarts, distinct for two daemons on one
// machine (their state directories differ).
Result<std::string> LoadOrCreateAuditNodeId(const std::string& dir);

// Segmented trail (see above). An empty directory: one file at the path.
struct AuditSegmentOptions {
  std::string directory;    // absolute; created 0700 if missing
  uint64_t max_bytes = 0;   // > 0: a segment is closed once it holds this many bytes
  int64_t max_seconds = 0;  // > 0: ... or once it is this old (checked when a batch comes)
  // When set (with or without a directory): called on the writer thread with every line (without
  // its newline) once its batch is durable, e.g. to copy it to journald. Best effort: it cannot
  // fail an entry. Must not call back into the log.
  std::function<void(std::string_view line)> copy_line;
};

// A segment's file name, parsed. `node` is "" for a trail without node ids.
struct AuditSegmentName {
  std::string node;
  uint64_t index = 0;
  int64_t opened = 0;  // Unix seconds (minute resolution) from the name
  bool gz = false;     // ends with .log.gz
};
std::optional<AuditSegmentName> ParseAuditSegmentName(std::string_view file_name);
std::string AuditSegmentFileName(std::string_view node, uint64_t index, int64_t unix_seconds);
// The checkpoint file of a node's segments in a directory (audit-checkpoint[-<node>].json).
std::string AuditCheckpointFileName(std::string_view node);

class AuditLog {
 public:
  // Opens (creating 0600) the file at `path`, reads its last line to continue the chain (cutting a
  // torn tail), and starts the writer. kUnavailable when the file or the token key is unusable.
  static Result<std::unique_ptr<AuditLog>> Open(const std::string& path, hsm::Token& token,
                                                Clock& clock, Logger& log,
                                                AuditNodeOptions node = {},
                                                AuditSegmentOptions segments = {});
  ~AuditLog();  // drains the queue
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Appends the event; returns when it is durable. kUnavailable when it could not be written.
  Status Record(const AuditEvent& e);
  // Appends the event and calls `done` once with what Record would return: on the writer thread
  // when the batch holding it is durable (or failed), or on the calling thread when the event
  // could not be prepared or the log is closing. `done` must not call back into this log's
  // Record (it would wait for the thread it runs on).
  void RecordThen(const AuditEvent& e, std::function<void(Status)> done);
  // Appends the event without waiting; a failure is logged (operational log), not returned.
  void RecordAsync(const AuditEvent& e);
  // Hashes an event's identifiers in the token ahead of time, so that a thread that must not call
  // the token (an io thread) can record the event later with RecordAsync(e, ids).
  Result<AuditIds> HashIds(std::string_view account, std::string_view object);
  // RecordAsync with identifiers hashed by HashIds (e.account and e.object are not used); no token
  // call on the calling thread. A failed HashIds is logged like a failed entry.
  void RecordAsync(const AuditEvent& e, const Result<AuditIds>& ids);

  uint64_t last_seq() const;
  // Writes an anchor line now (what the anchor thread does every interval); kFailedPrecondition
  // without a store. Returns when the line is durable.
  Status WriteAnchor();

  // Log rotation: when the file at the path is no longer the one written (moved away or deleted),
  // opens a new one there (0600) and continues the chain in it, starting with an
  // `audit_log_reopened` entry; returns true. False when the file at the path is still the one in
  // use (nothing to do). kFailedPrecondition when another, non-empty file (or not a regular file)
  // is at the path: the chain is never continued in someone else's lines, so writing goes on in
  // the old file. kUnavailable when the new file cannot be created (the old one stays in use).
  // With segments: asks the writer to start a new segment with the next line (and records an
  // `audit_log_reopened` entry); returns true.
  Result<bool> Reopen();
  // The file written (with segments: the current segment; empty before the first one).
  std::string path() const;

 private:
  struct Entry;
  AuditLog(std::string path, int fd, hsm::Token& token, Clock& clock, Logger& log,
           AuditNodeOptions node, AuditSegmentOptions segments);
  Status OpenSegments(uint64_t& cut);
  bool NeedNewSegment(int64_t now) const;  // writer thread
  Status ClaimNode();
  void PublishHead();  // called after a durable batch (writer thread)
  // Writer thread: publishes the head unless one was issued less than kHeadPublishInterval ago;
  // then marks it pending, and the writer publishes it when the interval is over (or at stop).
  void MaybePublishHead();
  void IssuePublish(uint64_t seq, const std::string& hash);
  Result<std::unique_ptr<Entry>> BuildAnchor();
  void AnchorLoop();
  Result<std::unique_ptr<Entry>> Prepare(const AuditEvent& e);
  std::unique_ptr<Entry> Build(const AuditEvent& e, const AuditIds& ids);
  void Enqueue(std::unique_ptr<Entry> entry);
  void WriterLoop();
  // Logs that an entry could not be prepared (token unusable): at most one line per 10 s, with
  // the number of failures since the last line (an HSM outage under load would flood the log).
  void LogPrepareFailure(const AuditEvent& e, const Status& s);

  std::string path_;  // guarded by mu_ (changes at a segment rotation)
  // The file written. file_mu_ is held by the writer while it writes, syncs or cuts a batch, and
  // by Reopen() while it swaps the file, so a batch never straddles two files.
  std::mutex file_mu_;
  std::mutex reopen_mu_;  // one Reopen() at a time
  int fd_;
  hsm::Token& token_;
  Clock& clock_;
  Logger& log_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Entry>> queue_;
  bool stopping_ = false;
  bool need_prev_ = true;  // the next line starts a file or a run: it names "p" (file_mu_)
  bool broken_ = false;
  uint64_t seq_ = 0;      // last written (writer thread only after Open)
  std::string prev_mac_;  // hex MAC of the last written line
  std::chrono::steady_clock::time_point last_failure_log_{};  // writer thread only
  // At most one head write per interval (each is a synchronously replicated transaction: one per
  // batch cost the database more CPU than the requests' own reads). The published head may lag
  // the file by this much (docs/decisions.md).
  static constexpr auto kHeadPublishInterval = std::chrono::milliseconds(250);
  std::chrono::steady_clock::time_point last_head_publish_{};  // writer thread only
  bool head_pending_ = false;                                  // writer thread only
  static constexpr size_t kMaxCachedAccountHashes = 20'000;
  std::mutex hash_mu_;
  std::unordered_map<std::string, std::string> account_hashes_;  // account id -> audit hash
  std::mutex prepare_failure_mu_;
  std::optional<std::chrono::steady_clock::time_point> last_prepare_failure_log_;
  uint64_t prepare_failures_ = 0;  // since the last line
  const AuditNodeOptions node_;
  std::mutex publish_mu_;
  std::condition_variable publish_cv_;
  bool publish_in_flight_ = false;
  bool publish_dirty_ = false;
  std::optional<Bytes> published_;  // the head row as last written (compare-and-swap)
  std::optional<Bytes> uncertain_;  // a head write whose outcome is unknown
  bool conflict_ = false;           // another daemon writes heads under this node id
  const AuditSegmentOptions segments_;
  // The current segment (writer thread only after Open; index 0: none yet).
  uint64_t segment_index_ = 0;
  std::string segment_name_;
  uint64_t segment_bytes_ = 0;
  int64_t segment_opened_ = 0;
  std::atomic<bool> new_segment_requested_{false};
  std::thread writer_;
  std::thread anchor_;
};

// Result of checking audit files against the token's audit key.
struct AuditVerifyReport {
  uint64_t lines = 0;           // in all files
  uint64_t first_bad_line = 0;  // 1-based, within bad_file; 0 when the chain is intact
  std::string bad_file;         // the file holding first_bad_line
  std::string problem;          // what is wrong at first_bad_line
  std::string last_mac;
  uint64_t first_seq = 0;  // sequence numbers checked: first_seq..last_seq
  uint64_t last_seq = 0;
  bool ok() const { return first_bad_line == 0; }
};

// Checks `paths` in order as one chain (a rotated file, then the file that continues it, ...).
// Every file must end with a MAC'd line. Lines of format 1 and 2 (see above). The first line must
// be the chain's first (sequence number 1, linked to 64 zeros) unless `partial`: then the first
// file may start in the middle of the chain (the files before it were rotated away; its first
// line must name "p"), and its first line's link to the line before it cannot be checked; a
// removal of whole lines before that point is not detected.
// `progress(bytes_read, total_bytes)` is called as the files are read. kNotFound when a file
// cannot be read.
// `visit(seq, body, link, mac)`, when set, sees every line that passed its own checks.
// `fields` is the line's JSON with format 1's names (ExpandAuditLine).
using AuditLineVisitor = std::function<void(uint64_t seq, const nlohmann::json& fields,
                                            std::string_view link, bool mac)>;
Result<AuditVerifyReport> VerifyAuditLogs(
    const std::vector<std::string>& paths, hsm::Token& token,
    const std::function<void(uint64_t, uint64_t)>& progress = nullptr, bool partial = false,
    const AuditLineVisitor& visit = nullptr);
// Several nodes' trails (issue 16). `paths` are files or directories (every regular file in a
// directory; a directory holding segments: its segments only, per node in index order, with the
// segment checks below). Files are grouped by the node their first line names (files without a node
// form one group, kept in the order given; a node's files are ordered by their first seq), each
// group is verified as one chain (VerifyAuditLogs, `partial` applies to each), then every anchor
// head is checked: the node's chain must hold a MAC'd line with that seq and hash. A chain ending
// before a seq an anchor vouches for is reported as truncated, a node named by anchors but given
// no file as missing.
struct AuditChainReport {
  std::string node;  // "" for lines without a node
  std::vector<std::string> files;
  AuditVerifyReport report;
};
struct AuditTrailReport {
  std::vector<AuditChainReport> chains;
  uint64_t anchors = 0;               // anchor lines read
  uint64_t heads_checked = 0;         // anchor heads matched against a chain
  std::vector<std::string> problems;  // cross-chain: truncated, missing, mismatching heads
  bool ok() const;
};
// Segments in a directory are checked per node before the chain: a gap in the indexes names the
// missing segment(s); the header of segment k+1 must name segment k and its last seq (else k is
// reported truncated, or extended); compressed segments are named (gunzip them first). A valid
// checkpoint (audit-checkpoint[-node].json, MAC'd with the audit key) says where the kept history
// starts: segments before it are skipped and the first kept segment must start with the seq and
// link it names; without one the trail must start at segment 1 and seq 1.
Result<AuditTrailReport> VerifyAuditTrail(
    const std::vector<std::string>& paths, hsm::Token& token,
    const std::function<void(uint64_t, uint64_t)>& progress = nullptr, bool partial = false);

// Writes `dir`/audit-checkpoint[-node].json: the history of `node`'s segments starts at
// `first_segment` (a file name in `dir`), whose first line's seq and link it records, MAC'd with
// the audit key. Written to a temporary name, synced and renamed.
Status WriteAuditCheckpoint(const std::string& dir, const std::string& first_segment,
                            hsm::Token& token, Clock& clock);

// One line of the trail with format 1's field names, for people and tools
// (`opentoken-admin audit-show`): a format-1 line as it is; a format-2 line as JSON with "seq",
// "format":2, then its fields in their order with long names, identifiers in hex (as format 1
// wrote them, so an account's entries match across the switch), the time as
// 2026-12-06T09:30:00Z, and "mac" on a MAC'd line. kDataLoss when it is no audit line.
// `node`, when given, carries the node across the lines of one file: set from a line that names
// it, added to the lines that do not (format 2 names it only on the lines that name "p").
Result<std::string> ExpandAuditLine(std::string_view line, std::string* node = nullptr);

// One file, from the chain's start.
Result<AuditVerifyReport> VerifyAuditLog(
    const std::string& path, hsm::Token& token,
    const std::function<void(uint64_t, uint64_t)>& progress = nullptr);

}  // namespace otd::service
