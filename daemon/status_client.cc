#include "daemon/status_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/strict_json.h"

namespace otd::daemon {

namespace {

// Closes the descriptor on scope exit.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

DaemonStatus Unknown(std::string reason) {
  return {.state = DaemonState::kUnknown, .answer = nullptr, .reason = std::move(reason)};
}

bool WaitFor(int fd, short events, int timeout_ms) {
  pollfd p{.fd = fd, .events = events, .revents = 0};
  int n = 0;
  do {
    n = ::poll(&p, 1, timeout_ms);
  } while (n < 0 && errno == EINTR);
  return n > 0;
}

}  // namespace

DaemonStatus ClassifyStatusAnswer(const std::string& raw) {
  const size_t head_end = raw.find("\r\n\r\n");
  if (raw.rfind("HTTP/1.", 0) != 0 || raw.size() < 12 || head_end == std::string::npos) {
    return Unknown("malformed answer from the daemon");
  }
  const std::string code = raw.substr(9, 3);
  if (code != "200" && code != "503") {
    return Unknown("the daemon answered GET /status with HTTP " + code +
                   " (an older opentokend without /status?)");
  }
  auto body = ParseStrictJson(std::string_view(raw).substr(head_end + 4));
  if (!body.ok() || !body->is_object() || !body->contains("status") ||
      !(*body)["status"].is_string()) {
    return Unknown("malformed answer from the daemon");
  }
  const bool healthy = (*body)["status"] == "healthy";
  if (healthy != (code == "200")) {
    return Unknown("inconsistent answer from the daemon");
  }
  return {.state = healthy ? DaemonState::kHealthy : DaemonState::kUnhealthy,
          .answer = std::move(*body),
          .reason = ""};
}

DaemonStatus QueryDaemonStatus(const std::string& socket_path, int timeout_ms) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof(addr.sun_path)) {
    return Unknown("metrics socket path too long: " + socket_path);
  }
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (fd.get() < 0) {
    return Unknown(std::string("socket: ") + std::strerror(errno));
  }
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int e = errno;
    if (e == ENOENT || e == ECONNREFUSED) {
      return {.state = DaemonState::kNotRunning,
              .answer = nullptr,
              .reason = "nothing listens on " + socket_path + " (" + std::strerror(e) + ")"};
    }
    if (e != EINPROGRESS && e != EAGAIN) {
      return Unknown("cannot connect to " + socket_path + ": " + std::strerror(e));
    }
    if (!WaitFor(fd.get(), POLLOUT, timeout_ms)) {
      return Unknown("no connection to " + socket_path + " within the timeout");
    }
  }
  const std::string request =
      "GET /status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
  size_t sent = 0;
  while (sent < request.size()) {
    if (!WaitFor(fd.get(), POLLOUT, timeout_ms)) {
      return Unknown("the daemon did not take the request within the timeout");
    }
    const ssize_t n = ::send(fd.get(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      return Unknown(std::string("send: ") + std::strerror(errno));
    }
    sent += n > 0 ? static_cast<size_t>(n) : 0;
  }
  std::string raw;
  char buf[4096];
  for (;;) {
    if (!WaitFor(fd.get(), POLLIN, timeout_ms)) {
      return Unknown("no answer from the daemon within the timeout");
    }
    const ssize_t n = ::recv(fd.get(), buf, sizeof(buf), 0);
    if (n == 0) {
      break;
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) {
        continue;
      }
      return Unknown(std::string("recv: ") + std::strerror(errno));
    }
    raw.append(buf, static_cast<size_t>(n));
    if (raw.size() > 1024 * 1024) {
      return Unknown("answer too large");
    }
  }
  return ClassifyStatusAnswer(raw);
}

nlohmann::json StatusJson(const DaemonStatus& s) {
  if (s.answer.is_object()) {
    return s.answer;
  }
  return {{"status", s.state == DaemonState::kNotRunning ? "not-running" : "unknown"},
          {"reason", s.reason}};
}

std::string StatusText(const DaemonStatus& s) {
  if (!s.answer.is_object()) {
    return std::string(s.state == DaemonState::kNotRunning ? "not running" : "unknown") + ": " +
           s.reason + "\n";
  }
  const nlohmann::json& a = s.answer;
  auto str = [&a](const char* key) {
    return a.contains(key) && a[key].is_string() ? a[key].get<std::string>() : std::string("-");
  };
  std::string out =
      "opentokend " + str("version") + " (git " + str("git") + "): " + str("status") + "\n";
  if (a.contains("uptime_seconds") && a["uptime_seconds"].is_number_integer()) {
    out += "uptime: " + std::to_string(a["uptime_seconds"].get<int64_t>()) + " s\n";
  }
  out += "node: " + str("node_id") + ", storage: " + str("storage_backend") + "\n";
  if (a.contains("checks") && a["checks"].is_object()) {
    out += "checks:";
    for (const char* k : {"token", "store", "keys"}) {
      out += std::string(" ") + k + " " + (a["checks"].value(k, false) ? "ok" : "FAILED");
    }
    out += "\n";
  }
  if (a.contains("detail") && a["detail"].is_string()) {
    out += "detail: " + a["detail"].get<std::string>() + "\n";
  }
  if (a.contains("key_versions") && a["key_versions"].is_object()) {
    out += "key versions: kek " + a["key_versions"].value("kek", nlohmann::json()).dump() +
           ", index " + a["key_versions"].value("index", nlohmann::json()).dump() + "\n";
  }
  if (a.contains("listeners") && a["listeners"].is_array()) {
    for (const auto& l : a["listeners"]) {
      if (!l.is_object()) {
        continue;
      }
      out += "listening: " + l.value("transport", std::string("?")) + " ";
      out += l.contains("path") ? l.value("path", std::string())
                                : l.value("address", std::string()) + ":" +
                                      (l.contains("port") ? l["port"].dump() : std::string("?"));
      if (l.contains("purpose")) {
        out += " (" + l.value("purpose", std::string()) + ")";
      }
      out += "\n";
    }
  }
  return out;
}

}  // namespace otd::daemon
