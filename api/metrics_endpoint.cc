#include "api/metrics_endpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <string>

#include "common/ascii.h"

namespace otd::api {

namespace {

constexpr size_t kMinTokenBytes = 16;
constexpr size_t kMaxTokenBytes = 4096;

// True when the request carries exactly one `Authorization: Bearer <token>` with this token.
bool BearerMatches(const Request& req, const SecretBytes& token) {
  size_t count = 0;
  std::string_view value;
  for (const auto& f : req) {
    if (f.name() == http::field::authorization) {
      ++count;
      value = f.value();
    }
  }
  constexpr std::string_view kScheme = "Bearer ";
  if (count != 1 || value.size() <= kScheme.size()) {
    return false;
  }
  // The scheme is case-insensitive (RFC 9110 §11.1).
  if (!AsciiStartsWithIgnoreCase(value, kScheme)) {
    return false;
  }
  const SecretBytes offered = SecretBytes::CopyFrom(value.substr(kScheme.size()));
  return ConstantTimeEquals(offered, token);
}

}  // namespace

void RegisterMetricsRoutes(Router& router, metrics::Registry& registry,
                           std::optional<SecretBytes> bearer_token) {
  std::shared_ptr<const SecretBytes> token;
  if (bearer_token && !bearer_token->empty()) {
    token = std::make_shared<const SecretBytes>(std::move(*bearer_token));
  }
  router.Add({.method = http::verb::get,
              .pattern = "/metrics",
              // The Unix socket's file mode is its access control; on TCP, the bearer token.
              .auth = {.anonymous = true},
              .audit = AuditSpec::None(),
              .handler = [&registry, token](Call& call) -> Reply {
                if (token && !BearerMatches(call.req, *token)) {
                  Response res{http::status::unauthorized, call.req.version()};
                  res.set(http::field::www_authenticate, "Bearer realm=\"opentokend-metrics\"");
                  res.set(http::field::content_type, "text/plain; charset=utf-8");
                  res.body() = "a bearer token is required (metrics.tcp.bearer_token_file)\n";
                  res.prepare_payload();
                  return res;
                }
                Response res{http::status::ok, call.req.version()};
                res.set(http::field::content_type, kMetricsContentType);
                res.body() = registry.Render();
                res.prepare_payload();
                return res;
              }});
}

Result<SecretBytes> LoadBearerTokenFile(const std::string& path, std::string_view key) {
  const std::string k(key);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    return InvalidArgument(k + ": cannot open " + path);
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return InvalidArgument(k + ": " + path + " is not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    return InvalidArgument(k + ": " + path +
                           " may be read or written by group or others (chmod 600 it)");
  }
  SecretBytes buf(kMaxTokenBytes + 2);
  size_t have = 0;
  auto bytes = buf.MutableReveal(SecretAccess::Grant());
  while (have < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + have, bytes.size() - have);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    have += static_cast<size_t>(n);
  }
  ::close(fd);
  // The first line, blanks trimmed.
  size_t end = 0;
  while (end < have && bytes[end] != '\n' && bytes[end] != '\r') {
    ++end;
  }
  size_t begin = 0;
  while (begin < end && (bytes[begin] == ' ' || bytes[begin] == '\t')) {
    ++begin;
  }
  while (end > begin && (bytes[end - 1] == ' ' || bytes[end - 1] == '\t')) {
    --end;
  }
  const size_t len = end - begin;
  if (len < kMinTokenBytes || len > kMaxTokenBytes) {
    return InvalidArgument(k + ": the token in " + path + " must be 16 to 4096 characters");
  }
  for (size_t i = begin; i < end; ++i) {
    if (bytes[i] < 0x21 || bytes[i] > 0x7e) {
      return InvalidArgument(k + ": the token in " + path +
                             " must be visible ASCII characters only");
    }
  }
  return SecretBytes::CopyFrom(bytes.subspan(begin, len));
}

}  // namespace otd::api
