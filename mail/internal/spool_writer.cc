#include "mail/internal/spool_writer.h"

#include <fcntl.h>
#include <stdio.h>  // NOLINT(modernize-deprecated-headers): renameat2, RENAME_NOREPLACE
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common/bytes.h"

namespace otd::mail::internal {

UniqueFd& UniqueFd::operator=(UniqueFd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) {
      ::close(fd_);
    }
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

Status UniqueFd::Close() {
  int fd = std::exchange(fd_, -1);
  if (fd >= 0 && ::close(fd) != 0 && errno != EINTR) {
    return ErrnoStatus("close", errno);
  }
  return Status::Ok();
}

Status ErrnoStatus(std::string_view what, int err) {
  char buf[128];
  const char* text = strerror_r(err, buf, sizeof buf);  // GNU variant
  return Unavailable(std::string(what) + ": " + text);
}

Result<std::string> RandomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  size_t got = 0;
  while (got < bytes) {
    ssize_t n = ::getrandom(raw.data() + got, bytes - got, 0);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return ErrnoStatus("getrandom", errno);
    }
    got += static_cast<size_t>(n);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes * 2);
  for (uint8_t c : AsBytes(raw)) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

Status EnsureDirectory(const std::string& path) {
  if (path.empty()) {
    return InvalidArgument("directory path is empty");
  }
  for (size_t pos = 1; pos <= path.size(); ++pos) {
    if (pos != path.size() && path[pos] != '/') {
      continue;
    }
    std::string prefix = path.substr(0, pos);
    if (::mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST) {
      return ErrnoStatus("mkdir " + prefix, errno);
    }
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return ErrnoStatus("stat " + path, errno);
  }
  if (!S_ISDIR(st.st_mode)) {
    return FailedPrecondition(path + " is not a directory");
  }
  return Status::Ok();
}

Result<SpoolWriter> SpoolWriter::Open(const std::string& dir) {
  OTD_RETURN_IF_ERROR(EnsureDirectory(dir));
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) {
    return ErrnoStatus("open " + dir, errno);
  }
  return SpoolWriter(dir, std::move(fd));
}

Result<std::string> SpoolWriter::NewId(int64_t unix_seconds, int64_t nanoseconds) {
  OTD_ASSIGN_OR_RETURN(std::string random, RandomHex(8));
  char frac[16];
  (void)std::snprintf(frac, sizeof frac, ".%09lld-",
                      static_cast<long long>(nanoseconds % 1000000000));
  return std::to_string(unix_seconds) + frac + random;
}

Status SpoolWriter::SyncDirectory() const {
  if (::fsync(dir_.get()) != 0) {
    return ErrnoStatus("fsync " + path_, errno);
  }
  return Status::Ok();
}

Status SpoolWriter::Write(std::string_view id, std::string_view content) const {
  const std::string tmp_name = "." + std::string(id) + ".tmp";
  const std::string final_name = std::string(id) + ".eml";
  UniqueFd fd(::openat(dir_.get(), tmp_name.c_str(),
                       O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd.valid()) {
    return ErrnoStatus("create spool file", errno);
  }
  auto fail = [&](std::string_view what, int err) {
    Status s = ErrnoStatus(what, err);
    ::unlinkat(dir_.get(), tmp_name.c_str(), 0);
    return s;
  };
  // The umask can only narrow the mode; make it exactly 0600 whatever it is.
  if (::fchmod(fd.get(), 0600) != 0) {
    return fail("chmod spool file", errno);
  }
  size_t off = 0;
  while (off < content.size()) {
    ssize_t n = ::write(fd.get(), content.data() + off, content.size() - off);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return fail("write spool file", errno);
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) {
    return fail("fsync spool file", errno);
  }
  if (Status s = fd.Close(); !s.ok()) {
    ::unlinkat(dir_.get(), tmp_name.c_str(), 0);
    return s;
  }
  if (::renameat2(dir_.get(), tmp_name.c_str(), dir_.get(), final_name.c_str(), RENAME_NOREPLACE) !=
      0) {
    int err = errno;
    if (err == EEXIST) {
      ::unlinkat(dir_.get(), tmp_name.c_str(), 0);
      return AlreadyExists("spool file exists");
    }
    if (err != EINVAL && err != ENOSYS) {
      return fail("rename spool file", err);
    }
    // File system without RENAME_NOREPLACE: the 64-bit random id makes a clash implausible.
    if (::renameat(dir_.get(), tmp_name.c_str(), dir_.get(), final_name.c_str()) != 0) {
      return fail("rename spool file", errno);
    }
  }
  return SyncDirectory();
}

}  // namespace otd::mail::internal
