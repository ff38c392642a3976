#pragma once
// Durable, atomic message files: `<dir>/<id>.eml` written as `<dir>/.<id>.tmp` (O_EXCL, 0600),
// fsync'd, renamed into place without replacing anything, then the directory fsync'd.
// Used by both the spool and the SMTP outbox.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "common/status.h"

namespace otd::mail::internal {

// Owns a file descriptor. Move-only.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd();

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  // Closes now and reports close(2) errors (a deferred write error shows up here).
  Status Close();

 private:
  int fd_ = -1;
};

// kUnavailable with `what` and strerror(err). Never includes addresses or content.
Status ErrnoStatus(std::string_view what, int err);

// Lowercase hex of `bytes` bytes from getrandom(2).
Result<std::string> RandomHex(size_t bytes);

// Creates `path` and missing parents with mode 0700 (existing directories are left as they are).
Status EnsureDirectory(const std::string& path);

class SpoolWriter {
 public:
  // Creates the directory if missing and keeps it open.
  static Result<SpoolWriter> Open(const std::string& dir);

  // A fresh message id: "<unix seconds>.<9-digit nanoseconds>-<16 random hex>", e.g.
  // "1700000000.123456789-0123456789abcdef"; the file is `<id>.eml`. Ids sort by creation time
  // (file modification times are too coarse to order messages sent within a few ms).
  static Result<std::string> NewId(int64_t unix_seconds, int64_t nanoseconds);

  // Writes `content` to `<dir>/<id>.eml` atomically and durably. kAlreadyExists if that file
  // exists; kUnavailable for I/O errors (the temp file is removed).
  Status Write(std::string_view id, std::string_view content) const;

  // fsync(2) of the directory (after unlink/rename done by a caller).
  Status SyncDirectory() const;

  int dir_fd() const { return dir_.get(); }
  const std::string& path() const { return path_; }

 private:
  SpoolWriter(std::string path, UniqueFd dir) : path_(std::move(path)), dir_(std::move(dir)) {}
  std::string path_;
  UniqueFd dir_;
};

}  // namespace otd::mail::internal
