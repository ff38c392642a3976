#include "mail/mail.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <streambuf>
#include <string>
#include <thread>
#include <vector>
#include <nlohmann/json.hpp>

#include "common/log.h"
#include "common/testing/status_matchers.h"
#include "mail/outbox.h"

extern char** environ;

namespace otd::mail {
namespace {

using ::otd::testing::IsOk;
using ::testing::Not;

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// ---- helpers --------------------------------------------------------------------------------

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "otd_mail_test_XXXXXX").string();
    EXPECT_NE(::mkdtemp(tmpl.data()), nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A log sink the test may read while a delivery thread writes to it.
class LockedBuf : public std::streambuf {
 public:
  std::string Text() {
    std::lock_guard lock(mu_);
    return text_;
  }

 protected:
  int overflow(int c) override {
    if (c != EOF) {
      std::lock_guard lock(mu_);
      text_ += static_cast<char>(c);
    }
    return c;
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    std::lock_guard lock(mu_);
    text_.append(s, static_cast<size_t>(n));
    return n;
  }

 private:
  std::mutex mu_;
  std::string text_;
};

class TestLog {
 public:
  Logger& logger() { return logger_; }
  std::string Text() { return buf_.Text(); }
  size_t Count(std::string_view needle) {
    std::string t = Text();
    size_t n = 0;
    for (size_t p = t.find(needle); p != std::string::npos; p = t.find(needle, p + 1))
      ++n;
    return n;
  }
  bool WaitFor(std::string_view needle, size_t times, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (Count(needle) < times) {
      if (std::chrono::steady_clock::now() > deadline)
        return false;
      std::this_thread::sleep_for(10ms);
    }
    return true;
  }

 private:
  LockedBuf buf_;
  std::ostream out_{&buf_};
  Logger logger_{out_};
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Names in `dir` (files and directories), sorted.
std::vector<std::string> ListNames(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    out.push_back(e.path().filename());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> ListEml(const std::string& dir) {
  std::vector<std::string> out;
  for (auto& n : ListNames(dir)) {
    if (n.ends_with(".eml"))
      out.push_back(n);
  }
  return out;
}

bool OnlyCrlfLineEndings(std::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r'))
      return false;
    if (s[i] == '\r' && (i + 1 == s.size() || s[i + 1] != '\n'))
      return false;
  }
  return true;
}

std::string Crlf(std::string_view in) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '\r' || in[i] == '\n') {
      if (in[i] == '\r' && i + 1 < in.size() && in[i + 1] == '\n')
        ++i;
      out += "\r\n";
    } else {
      out += in[i];
    }
  }
  return out;
}

std::string QpDecode(std::string_view in) {
  auto hex = [](char c) { return c <= '9' ? c - '0' : c - 'A' + 10; };
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '=') {
      out += in[i];
    } else if (in.substr(i + 1, 2) == "\r\n") {
      i += 2;
    } else {
      out += static_cast<char>(hex(in[i + 1]) * 16 + hex(in[i + 2]));
      i += 2;
    }
  }
  return out;
}

std::string Base64Decode(std::string_view in) {
  static const std::string kB64 =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=')
      break;
    acc = (acc << 6) | static_cast<uint32_t>(kB64.find(c));
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  return out;
}

// Decodes a header value made of `=?utf-8?B?…?=` words separated by folding white space.
std::string DecodeHeader(std::string value) {
  if (value.rfind("=?", 0) != 0)
    return value;
  std::string out;
  size_t pos = 0;
  while ((pos = value.find("=?utf-8?B?", pos)) != std::string::npos) {
    size_t end = value.find("?=", pos + 10);
    out += Base64Decode(value.substr(pos + 10, end - pos - 10));
    pos = end + 2;
  }
  return out;
}

struct Entity {
  std::multimap<std::string, std::string> headers;  // lower-case names, unfolded values
  std::string body;

  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

Entity ParseEntity(std::string_view raw) {
  Entity e;
  size_t split = raw.find("\r\n\r\n");
  EXPECT_NE(split, std::string_view::npos);
  std::string head(raw.substr(0, split));
  e.body = std::string(raw.substr(split + 4));
  // Unfold: CRLF followed by white space continues the previous line.
  std::string unfolded;
  for (size_t i = 0; i < head.size(); ++i) {
    if (head.compare(i, 3, "\r\n ") == 0) {
      unfolded += ' ';
      i += 2;
    } else {
      unfolded += head[i];
    }
  }
  std::istringstream lines(unfolded);
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty() && line.back() == '\r')
      line.pop_back();
    size_t colon = line.find(':');
    EXPECT_NE(colon, std::string::npos) << line;
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(), ::tolower);
    e.headers.emplace(name, line.substr(colon + 2));
  }
  return e;
}

std::string BoundaryOf(const std::string& content_type) {
  size_t p = content_type.find("boundary=\"");
  if (p == std::string::npos)
    return {};
  size_t start = p + 10;
  return content_type.substr(start, content_type.find('"', start) - start);
}

// Parts of a multipart body: the text between "--b" CRLF and the CRLF before the next "--b".
std::vector<std::string> SplitMultipart(const std::string& body, const std::string& boundary) {
  std::vector<std::string> parts;
  const std::string open = "--" + boundary + "\r\n";
  const std::string next = "\r\n--" + boundary;
  size_t pos = body.find(open);
  EXPECT_NE(pos, std::string::npos);
  EXPECT_TRUE(pos == 0 || body.compare(pos - 2, 2, "\r\n") == 0);
  pos += open.size();
  for (;;) {
    size_t end = body.find(next, pos);
    EXPECT_NE(end, std::string::npos);
    if (end == std::string::npos)
      break;
    parts.push_back(body.substr(pos, end - pos));
    size_t after = end + next.size();
    if (body.compare(after, 4, "--\r\n") == 0) {
      EXPECT_EQ(after + 4, body.size()) << "nothing after the close delimiter";
      break;
    }
    EXPECT_EQ(body.compare(after, 2, "\r\n"), 0);
    pos = after + 2;
  }
  return parts;
}

// What a reader of the message sees: decoded headers and bodies.
struct Decoded {
  Entity top;
  std::string subject;
  std::string text;
  std::string html;
  size_t parts = 0;
};

Decoded Decode(const std::string& raw) {
  Decoded d;
  d.top = ParseEntity(raw);
  d.subject = DecodeHeader(d.top.Header("subject"));
  std::string ct = d.top.Header("content-type");
  if (ct.rfind("multipart/alternative", 0) == 0) {
    auto parts = SplitMultipart(d.top.body, BoundaryOf(ct));
    d.parts = parts.size();
    for (const auto& p : parts) {
      Entity e = ParseEntity(p);
      EXPECT_EQ(e.Header("content-transfer-encoding"), "quoted-printable");
      std::string pct = e.Header("content-type");
      if (pct == "text/plain; charset=utf-8")
        d.text = QpDecode(e.body);
      if (pct == "text/html; charset=utf-8")
        d.html = QpDecode(e.body);
    }
  } else {
    EXPECT_EQ(ct, "text/plain; charset=utf-8");
    EXPECT_EQ(d.top.Header("content-transfer-encoding"), "quoted-printable");
    d.parts = 1;
    d.text = QpDecode(d.top.body);
  }
  return d;
}

Message SampleMessage(std::string subject = "Confirm your e-mail address") {
  Message m;
  m.to = "alice.secret@example.org";
  m.subject = std::move(subject);
  m.text =
      "Hello Alice,\n"
      "\n"
      "Your code is 123456. Line with trailing space \n"
      ".\n"
      "..starts with dots\n"
      "From the team = ok, caf\xc3\xa9 \xe2\x82\xac\n" +
      std::string(120, 'x') + "\n\ttabbed\tline\t\n";
  m.html =
      "<html><body><p>Hello Alice,</p><p style=\"color:red\">Your code is <b>123456</b>."
      "</p>\n<p>caf\xc3\xa9 " +
      std::string(90, 'y') + "</p></body></html>\n";
  return m;
}

void ExpectNoSecretsIn(const std::string& log, const Message& m) {
  EXPECT_EQ(log.find(m.to), std::string::npos) << log;
  EXPECT_EQ(log.find("alice"), std::string::npos) << log;
  EXPECT_EQ(log.find("123456"), std::string::npos) << log;
}

// ---- child processes ------------------------------------------------------------------------

class ChildProcess {
 public:
  // Starts argv[0] (looked up in PATH); with capture, its stdout is readable with ReadLine().
  static std::unique_ptr<ChildProcess> Spawn(const std::vector<std::string>& argv, bool capture) {
    int fds[2] = {-1, -1};
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    if (capture) {
      EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
      posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
    }
    std::vector<char*> args;
    for (const auto& a : argv)
      args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_t pid = -1;
    int rc = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (capture)
      ::close(fds[1]);
    EXPECT_EQ(rc, 0) << "cannot start " << argv[0];
    if (rc != 0) {
      if (capture)
        ::close(fds[0]);
      return nullptr;
    }
    return std::unique_ptr<ChildProcess>(new ChildProcess(pid, capture ? fds[0] : -1));
  }

  ~ChildProcess() {
    Stop();
    if (out_ >= 0)
      ::close(out_);
  }

  // One line of the child's stdout (without the newline); empty on timeout or EOF.
  std::string ReadLine(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string line;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0)
        return {};
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0)
        return {};
      char c;
      if (::read(out_, &c, 1) != 1)
        return {};
      if (c == '\n')
        return line;
      line += c;
    }
  }

  int Wait() {
    int status = 0;
    if (pid_ > 0) {
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  void Stop() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      Wait();
    }
  }

 private:
  ChildProcess(pid_t pid, int out) : pid_(pid), out_(out) {}
  pid_t pid_;
  int out_;
};

std::string SourceDir() {
  const char* env = std::getenv("OTD_SOURCE_DIR");
  return env != nullptr ? env : OTD_SOURCE_DIR_DEFAULT;
}

// tests/integration/smtp_peer.py on 127.0.0.1.
class SmtpPeer {
 public:
  static std::unique_ptr<SmtpPeer> Start(const std::string& dir,
                                         std::vector<std::string> extra = {}, int port = 0) {
    std::vector<std::string> argv = {"python3",
                                     SourceDir() + "/tests/integration/smtp_peer.py",
                                     "--dir",
                                     dir,
                                     "--print-port",
                                     "--port",
                                     std::to_string(port)};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto child = ChildProcess::Spawn(argv, true);
    if (!child)
      return nullptr;
    std::string line = child->ReadLine(10s);
    EXPECT_FALSE(line.empty()) << "smtp_peer.py did not print its port";
    if (line.empty())
      return nullptr;
    return std::unique_ptr<SmtpPeer>(new SmtpPeer(std::move(child), std::stoi(line)));
  }
  int port() const { return port_; }
  std::string url() const { return "smtp://127.0.0.1:" + std::to_string(port_); }

 private:
  SmtpPeer(std::unique_ptr<ChildProcess> child, int port) : child_(std::move(child)), port_(port) {}
  std::unique_ptr<ChildProcess> child_;
  int port_;
};

// A port nobody listens on (bound, then released).
int UnusedPort() {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}

nlohmann::json ReadEnvelope(const std::string& eml_path) {
  std::string json_path = eml_path.substr(0, eml_path.size() - 4) + ".json";
  return nlohmann::json::parse(ReadFile(json_path));
}

// ---- SpoolMailer ----------------------------------------------------------------------------

class SpoolMailerTest : public ::testing::Test {
 protected:
  std::unique_ptr<SpoolMailer> Make() {
    MailOptions o;
    o.spool_dir = spool_;
    o.from = "vault@example.net";
    auto m = SpoolMailer::Create(o, log_.logger());
    EXPECT_OK(m);
    return m.ok() ? std::move(m).value() : nullptr;
  }

  TempDir dir_;
  std::string spool_ = dir_.Sub("var/mail");  // missing parents are created
  TestLog log_;
};

TEST_F(SpoolMailerTest, WritesOneParseableMultipartMessageAsAPrivateFile) {
  auto mailer = Make();
  ASSERT_NE(mailer, nullptr);
  Message m = SampleMessage();
  ASSERT_OK(mailer->Send(m));

  std::vector<std::string> names = ListNames(spool_);
  ASSERT_EQ(names.size(), 1u) << "one file, no temp file left";
  const std::string& name = names[0];
  // <unix seconds>.<9-digit nanoseconds>-<16 hex>.eml
  ASSERT_EQ(name.size(), 10 + 1 + 9 + 1 + 16 + 4) << name;
  EXPECT_EQ(name[10], '.');
  EXPECT_EQ(name[20], '-');
  EXPECT_TRUE(name.ends_with(".eml"));
  long long secs = std::stoll(name.substr(0, 10));
  EXPECT_LE(std::abs(secs - static_cast<long long>(::time(nullptr))), 5);

  struct stat st {};
  ASSERT_EQ(::stat((spool_ + "/" + name).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(::stat(spool_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);

  std::string raw = ReadFile(spool_ + "/" + name);
  EXPECT_TRUE(OnlyCrlfLineEndings(raw));
  EXPECT_TRUE(raw.ends_with("\r\n"));
  for (size_t start = 0, eol; (eol = raw.find("\r\n", start)) != std::string::npos;
       start = eol + 2) {
    EXPECT_LE(eol - start, 78u) << "line too long: " << raw.substr(start, eol - start);
  }

  Decoded d = Decode(raw);
  EXPECT_EQ(d.top.Header("from"), "vault@example.net");
  EXPECT_EQ(d.top.Header("to"), m.to);
  EXPECT_EQ(d.subject, m.subject);
  EXPECT_EQ(d.top.Header("mime-version"), "1.0");
  EXPECT_EQ(d.top.Header("message-id"), "<" + name.substr(0, name.size() - 4) + "@example.net>");
  EXPECT_EQ(d.top.headers.count("date"), 1u);
  EXPECT_NE(d.top.Header("date").find(" +0000"), std::string::npos);
  EXPECT_EQ(d.top.Header("date")[3], ',');
  std::string ct = d.top.Header("content-type");
  EXPECT_EQ(ct.rfind("multipart/alternative; boundary=\"=_otd_", 0), 0u) << ct;
  EXPECT_EQ(BoundaryOf(ct).size(), 6u + 32u);
  EXPECT_EQ(d.parts, 2u);
  EXPECT_EQ(d.text, Crlf(m.text));
  EXPECT_EQ(d.html, Crlf(m.html));

  std::string log = log_.Text();
  EXPECT_NE(log.find("\"event\":\"mail_spooled\""), std::string::npos);
  EXPECT_NE(log.find(name.substr(0, name.size() - 4)), std::string::npos) << "logs the id";
  ExpectNoSecretsIn(log, m);
}

TEST_F(SpoolMailerTest, UsesDistinctBoundariesAndIdsForEachMessage) {
  auto mailer = Make();
  ASSERT_NE(mailer, nullptr);
  ASSERT_OK(mailer->Send(SampleMessage()));
  ASSERT_OK(mailer->Send(SampleMessage()));
  auto names = ListEml(spool_);
  ASSERT_EQ(names.size(), 2u);
  Entity a = ParseEntity(ReadFile(spool_ + "/" + names[0]));
  Entity b = ParseEntity(ReadFile(spool_ + "/" + names[1]));
  EXPECT_NE(a.Header("content-type"), b.Header("content-type"));
  EXPECT_NE(a.Header("message-id"), b.Header("message-id"));
}

TEST_F(SpoolMailerTest, EncodesANonAsciiSubjectAsEncodedWords) {
  auto mailer = Make();
  ASSERT_NE(mailer, nullptr);
  std::string subject =
      "Best\xc3\xa4tigen Sie Ihre E-Mail-Adresse \xe2\x80\x94 "
      "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x94\x91 and a long tail";
  ASSERT_OK(mailer->Send(SampleMessage(subject)));
  auto names = ListEml(spool_);
  ASSERT_EQ(names.size(), 1u);
  std::string raw = ReadFile(spool_ + "/" + names[0]);
  std::string head = raw.substr(0, raw.find("\r\n\r\n"));
  for (unsigned char c : head)
    EXPECT_LT(c, 0x80) << "headers are 7-bit";
  EXPECT_NE(head.find("Subject: =?utf-8?B?"), std::string::npos);
  EXPECT_EQ(Decode(raw).subject, subject);
}

TEST_F(SpoolMailerTest, WritesASingleTextPartWhenThereIsNoHtml) {
  auto mailer = Make();
  ASSERT_NE(mailer, nullptr);
  Message m = SampleMessage();
  m.html.clear();
  ASSERT_OK(mailer->Send(m));
  auto names = ListEml(spool_);
  ASSERT_EQ(names.size(), 1u);
  std::string raw = ReadFile(spool_ + "/" + names[0]);
  EXPECT_TRUE(OnlyCrlfLineEndings(raw));
  Decoded d = Decode(raw);
  EXPECT_EQ(d.parts, 1u);
  EXPECT_EQ(d.text, Crlf(m.text));
}

TEST_F(SpoolMailerTest, RejectsHeaderInjectionAndMalformedMessagesWithoutWritingAnything) {
  auto mailer = Make();
  ASSERT_NE(mailer, nullptr);
  std::vector<Message> bad;
  for (const char* to : {"alice@example.org\r\nBcc: eve@example.org", "alice@example.org\n",
                         "alice@example.org\rX: y", "Alice <alice@example.org>",
                         "alice@example.org, eve@example.org", "", "no-at-sign"}) {
    Message m = SampleMessage();
    m.to = to;
    bad.push_back(m);
  }
  for (const char* subject : {"Hi\r\nBcc: eve@example.org", "Hi\nthere", "Hi\rthere"}) {
    Message m = SampleMessage();
    m.subject = subject;
    bad.push_back(m);
  }
  Message bad_utf8 = SampleMessage();
  bad_utf8.text = "caf\xc3";
  bad.push_back(bad_utf8);
  Message too_long = SampleMessage(std::string(999, 's'));
  bad.push_back(too_long);

  for (const Message& m : bad) {
    Status s = mailer->Send(m);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << s.ToString();
    EXPECT_EQ(s.message().find("eve@"), std::string::npos);
    EXPECT_EQ(s.message().find("alice@"), std::string::npos);
  }
  EXPECT_TRUE(ListNames(spool_).empty());
  EXPECT_EQ(log_.Text().find("eve@"), std::string::npos);
}

TEST_F(SpoolMailerTest, ConcurrentSendsProduceDistinctCompleteFiles) {
  auto mailer = Make();
  ASSERT_NE(mailer, nullptr);
  constexpr int kThreads = 8;
  constexpr int kPerThread = 25;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        Message m = SampleMessage("message " + std::to_string(t * kPerThread + i));
        if (!mailer->Send(m).ok())
          ++failures;
      }
    });
  }
  for (auto& th : threads)
    th.join();
  EXPECT_EQ(failures.load(), 0);
  auto names = ListNames(spool_);
  ASSERT_EQ(names.size(), static_cast<size_t>(kThreads * kPerThread)) << "no temp files left";
  std::set<std::string> subjects;
  for (const auto& n : names) {
    ASSERT_TRUE(n.ends_with(".eml")) << n;
    subjects.insert(Decode(ReadFile(spool_ + "/" + n)).subject);
  }
  EXPECT_EQ(subjects.size(), static_cast<size_t>(kThreads * kPerThread));
}

TEST(MakeMailerTest, PicksTheModeFromTheOptionsAndNamesTheBadKey) {
  TempDir dir;
  std::ostringstream sink;
  Logger log(sink);
  MailOptions none;
  auto r = MakeMailer(none, log);
  ASSERT_THAT(r, Not(IsOk()));
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);

  MailOptions both;
  both.spool_dir = dir.Sub("spool");
  both.smtp_url = "smtp://127.0.0.1:25";
  EXPECT_EQ(MakeMailer(both, log).status().code(), Code::kInvalidArgument);

  MailOptions spool;
  spool.spool_dir = dir.Sub("spool");
  auto sm = MakeMailer(spool, log);
  ASSERT_OK(sm);
  EXPECT_NE(dynamic_cast<SpoolMailer*>(sm->get()), nullptr);

  MailOptions smtp;
  smtp.smtp_url = "smtp://127.0.0.1:" + std::to_string(UnusedPort());
  smtp.outbox_dir = dir.Sub("outbox");
  auto no_from = MakeMailer(smtp, log);
  ASSERT_THAT(no_from, Not(IsOk()));
  EXPECT_NE(no_from.status().message().find("mail.from"), std::string::npos);
  smtp.from = "vault@example.net";
  auto ok = MakeMailer(smtp, log);
  ASSERT_OK(ok);
  EXPECT_NE(dynamic_cast<SmtpMailer*>(ok->get()), nullptr);

  smtp.outbox_dir = dir.Sub("outbox2");
  smtp.smtp_url = "http://127.0.0.1/";
  auto bad_url = MakeMailer(smtp, log);
  ASSERT_THAT(bad_url, Not(IsOk()));
  EXPECT_NE(bad_url.status().message().find("mail.smtp_url"), std::string::npos);
  smtp.smtp_url = "smtp://127.0.0.1:25";
  smtp.outbox_dir.clear();
  auto no_outbox = MakeMailer(smtp, log);
  ASSERT_THAT(no_outbox, Not(IsOk()));
  EXPECT_NE(no_outbox.status().message().find("mail.outbox_dir"), std::string::npos);
}

// ---- SmtpMailer against tests/integration/smtp_peer.py --------------------------------------

class SmtpMailerTest : public ::testing::Test {
 protected:
  MailOptions Options(const std::string& url) const {
    MailOptions o;
    o.smtp_url = url;
    o.from = "vault@example.net";
    o.outbox_dir = outbox_;
    o.initial_retry_delay = 50ms;
    o.max_retry_delay = 200ms;
    o.connect_timeout = 3s;
    o.transfer_timeout = 5s;
    return o;
  }

  std::unique_ptr<SmtpMailer> Make(const MailOptions& o) {
    auto m = SmtpMailer::Create(o, log_.logger());
    EXPECT_OK(m);
    return m.ok() ? std::move(m).value() : nullptr;
  }

  TempDir dir_;
  std::string outbox_ = dir_.Sub("outbox");
  std::string received_ = dir_.Sub("received");
  TestLog log_;
};

TEST_F(SmtpMailerTest, DeliversAMessageWhoseBodiesArriveIntact) {
  auto peer = SmtpPeer::Start(received_);
  ASSERT_NE(peer, nullptr);
  auto mailer = Make(Options(peer->url()));
  ASSERT_NE(mailer, nullptr);
  Message m = SampleMessage();
  ASSERT_OK(mailer->Send(m));
  ASSERT_OK(mailer->Flush(10s));
  EXPECT_TRUE(ListEml(outbox_).empty());

  auto got = ListEml(received_);
  ASSERT_EQ(got.size(), 1u);
  std::string raw = ReadFile(received_ + "/" + got[0]);
  EXPECT_TRUE(OnlyCrlfLineEndings(raw));
  Decoded d = Decode(raw);
  EXPECT_EQ(d.top.Header("to"), m.to);
  EXPECT_EQ(d.subject, m.subject);
  EXPECT_EQ(d.text, Crlf(m.text));
  EXPECT_EQ(d.html, Crlf(m.html));

  nlohmann::json env = ReadEnvelope(received_ + "/" + got[0]);
  EXPECT_EQ(env["mail_from"], "vault@example.net");
  EXPECT_EQ(env["rcpt_to"], nlohmann::json::array({m.to}));
  EXPECT_EQ(env["tls"], false);

  mailer.reset();
  std::string log = log_.Text();
  EXPECT_EQ(log_.Count("\"event\":\"mail_queued\""), 1u);
  EXPECT_EQ(log_.Count("\"event\":\"mail_delivered\""), 1u);
  EXPECT_EQ(log_.Count("mail_delivery_failed"), 0u);
  ExpectNoSecretsIn(log, m);
}

TEST_F(SmtpMailerTest, RetriesWithBackoffUntilThePeerAcceptsAndLogsEachFailure) {
  auto peer = SmtpPeer::Start(received_, {"--fail-first", "2"});
  ASSERT_NE(peer, nullptr);
  auto mailer = Make(Options(peer->url()));
  ASSERT_NE(mailer, nullptr);
  Message m = SampleMessage();
  auto start = std::chrono::steady_clock::now();
  ASSERT_OK(mailer->Send(m));
  ASSERT_OK(mailer->Flush(10s));
  // Two waits: 50 ms, then 100 ms.
  EXPECT_GE(std::chrono::steady_clock::now() - start, 150ms);

  auto got = ListEml(received_);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(ReadEnvelope(received_ + "/" + got[0])["transaction"], 3);
  EXPECT_EQ(Decode(ReadFile(received_ + "/" + got[0])).text, Crlf(m.text));

  mailer.reset();
  std::string log = log_.Text();
  EXPECT_EQ(log_.Count("\"event\":\"mail_delivery_failed\""), 2u) << log;
  EXPECT_EQ(log_.Count("\"attempt\":1,\"smtp_code\":451"), 1u) << log;
  EXPECT_EQ(log_.Count("\"attempt\":2,\"smtp_code\":451"), 1u) << log;
  EXPECT_NE(log.find("\"retry_in_ms\":50"), std::string::npos) << log;
  EXPECT_NE(log.find("\"retry_in_ms\":100"), std::string::npos) << log;
  EXPECT_NE(log.find("\"event\":\"mail_delivered\""), std::string::npos);
  EXPECT_NE(log.find("\"attempts\":3"), std::string::npos);
  ExpectNoSecretsIn(log, m);
}

TEST_F(SmtpMailerTest, DeliversMessagesQueuedWhileThePeerWasDownAfterARestart) {
  int port = UnusedPort();
  std::string url = "smtp://127.0.0.1:" + std::to_string(port);
  std::map<std::string, std::string> queued;  // file name -> exact bytes
  {
    auto mailer = Make(Options(url));
    ASSERT_NE(mailer, nullptr);
    for (const char* subject : {"one", "two", "three"}) {
      ASSERT_OK(mailer->Send(SampleMessage(subject)));
    }
    ASSERT_TRUE(log_.WaitFor("\"event\":\"mail_delivery_failed\"", 2, 5s)) << log_.Text();
    EXPECT_EQ(mailer->Flush(50ms).code(), Code::kUnavailable);
    for (const auto& n : ListEml(outbox_))
      queued[n] = ReadFile(outbox_ + "/" + n);
  }  // "process" stops with the messages still queued
  ASSERT_EQ(queued.size(), 3u);
  EXPECT_EQ(ListEml(outbox_).size(), 3u);
  std::string log = log_.Text();
  EXPECT_NE(log.find("\"smtp_code\":0"), std::string::npos);
  EXPECT_NE(log.find("Couldn't connect"), std::string::npos) << log;

  auto peer = SmtpPeer::Start(received_, {}, port);
  ASSERT_NE(peer, nullptr);
  auto mailer = Make(Options(url));  // a new mailer over the same outbox
  ASSERT_NE(mailer, nullptr);
  ASSERT_OK(mailer->Flush(10s));
  EXPECT_TRUE(ListEml(outbox_).empty());

  auto got = ListEml(received_);
  ASSERT_EQ(got.size(), 3u);
  std::vector<std::string> order;
  for (const auto& n : got) {
    std::string raw = ReadFile(received_ + "/" + n);
    order.push_back(Decode(raw).subject);
    // Byte for byte what was queued (curl's dot-stuffing undone by the peer).
    std::string id = Decode(raw).top.Header("message-id");
    std::string file = id.substr(1, id.find('@') - 1) + ".eml";
    ASSERT_EQ(queued.count(file), 1u) << file;
    EXPECT_EQ(raw, queued[file]);
  }
  EXPECT_EQ(order, (std::vector<std::string>{"one", "two", "three"}));
  mailer.reset();
  EXPECT_NE(log_.Text().find("\"event\":\"mail_outbox_resumed\""), std::string::npos);
  ExpectNoSecretsIn(log_.Text(), SampleMessage());
}

TEST_F(SmtpMailerTest, MovesAPermanentlyRejectedMessageAsideAndDeliversTheNext) {
  auto peer = SmtpPeer::Start(received_, {"--fail-first", "1", "--fail-code", "550"});
  ASSERT_NE(peer, nullptr);
  auto mailer = Make(Options(peer->url()));
  ASSERT_NE(mailer, nullptr);
  ASSERT_OK(mailer->Send(SampleMessage("first")));
  ASSERT_OK(mailer->Send(SampleMessage("second")));
  ASSERT_OK(mailer->Flush(10s));
  auto got = ListEml(received_);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(Decode(ReadFile(received_ + "/" + got[0])).subject, "second");
  auto rejected = ListEml(outbox_ + "/rejected");
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(Decode(ReadFile(outbox_ + "/rejected/" + rejected[0])).subject, "first");
  mailer.reset();
  EXPECT_EQ(log_.Count("\"event\":\"mail_delivery_rejected\""), 1u) << log_.Text();
  EXPECT_NE(log_.Text().find("\"smtp_code\":550"), std::string::npos);
}

TEST_F(SmtpMailerTest, RefusesASecondMailerOnTheSameOutbox) {
  auto first = Make(Options("smtp://127.0.0.1:" + std::to_string(UnusedPort())));
  ASSERT_NE(first, nullptr);
  auto second = SmtpMailer::Create(Options("smtp://127.0.0.1:1"), log_.logger());
  ASSERT_THAT(second, Not(IsOk()));
  EXPECT_EQ(second.status().code(), Code::kFailedPrecondition);
}

TEST_F(SmtpMailerTest, StopsPromptlyWhileRetrying) {
  MailOptions o = Options("smtp://127.0.0.1:" + std::to_string(UnusedPort()));
  o.initial_retry_delay = 10s;
  o.max_retry_delay = 10s;
  auto mailer = Make(o);
  ASSERT_NE(mailer, nullptr);
  ASSERT_OK(mailer->Send(SampleMessage()));
  ASSERT_TRUE(log_.WaitFor("mail_delivery_failed", 1, 5s));
  auto start = std::chrono::steady_clock::now();
  mailer.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_EQ(ListEml(outbox_).size(), 1u) << "the message stays queued";
}

TEST_F(SmtpMailerTest, AbortsAnAttemptInFlightWhenDestroyed) {
  // A server that accepts the connection (kernel backlog) but never sends its greeting.
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(s, 8), 0);
  socklen_t len = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  MailOptions o = Options("smtp://127.0.0.1:" + std::to_string(ntohs(a.sin_port)));
  o.transfer_timeout = 30s;
  auto mailer = Make(o);
  ASSERT_NE(mailer, nullptr);
  ASSERT_OK(mailer->Send(SampleMessage()));
  std::this_thread::sleep_for(300ms);  // the attempt is now waiting for the greeting
  auto start = std::chrono::steady_clock::now();
  mailer.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  ::close(s);
  EXPECT_EQ(ListEml(outbox_).size(), 1u) << "the message stays queued";
  EXPECT_EQ(log_.Count("mail_delivery_failed"), 0u) << log_.Text();
  EXPECT_EQ(log_.Count("\"event\":\"mail_delivery_interrupted\""), 1u) << log_.Text();
}

// STARTTLS for real: the peer upgrades with Python's ssl module using a throw-away certificate.
class SmtpTlsTest : public SmtpMailerTest {
 protected:
  void SetUp() override {
    cert_ = dir_.Sub("cert.pem");
    key_ = dir_.Sub("key.pem");
    auto openssl = ChildProcess::Spawn(
        {"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", key_, "-out", cert_, "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-batch"},
        false);
    ASSERT_NE(openssl, nullptr);
    ASSERT_EQ(openssl->Wait(), 0);
  }
  std::string cert_;
  std::string key_;
};

TEST_F(SmtpTlsTest, UpgradesWithStarttlsWhenTheServerOffersIt) {
  auto peer = SmtpPeer::Start(received_, {"--tls-cert", cert_, "--tls-key", key_, "--require-tls"});
  ASSERT_NE(peer, nullptr);
  MailOptions o = Options(peer->url());
  o.ca_file = cert_;
  auto mailer = Make(o);  // require_tls = false: STARTTLS because it is offered
  ASSERT_NE(mailer, nullptr);
  Message m = SampleMessage();
  ASSERT_OK(mailer->Send(m));
  ASSERT_OK(mailer->Flush(10s)) << log_.Text();
  auto got = ListEml(received_);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(ReadEnvelope(received_ + "/" + got[0])["tls"], true);
  EXPECT_EQ(Decode(ReadFile(received_ + "/" + got[0])).text, Crlf(m.text));
}

TEST_F(SmtpTlsTest, RequiredTlsDeliversOverStarttlsAndVerifiesTheCertificate) {
  auto peer = SmtpPeer::Start(received_, {"--tls-cert", cert_, "--tls-key", key_});
  ASSERT_NE(peer, nullptr);
  MailOptions o = Options(peer->url());
  o.require_tls = true;
  {
    // Without the CA the certificate does not verify: nothing is sent, the message stays queued.
    auto mailer = Make(o);
    ASSERT_NE(mailer, nullptr);
    ASSERT_OK(mailer->Send(SampleMessage()));
    ASSERT_TRUE(log_.WaitFor("\"event\":\"mail_delivery_failed\"", 1, 5s));
  }
  EXPECT_TRUE(ListEml(received_).empty());
  EXPECT_EQ(ListEml(outbox_).size(), 1u);

  o.ca_file = cert_;
  auto mailer = Make(o);
  ASSERT_NE(mailer, nullptr);
  ASSERT_OK(mailer->Flush(10s)) << log_.Text();
  auto got = ListEml(received_);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(ReadEnvelope(received_ + "/" + got[0])["tls"], true);
}

TEST_F(SmtpTlsTest, RequiredTlsKeepsTheMessageQueuedWhenTheServerHasNoStarttls) {
  auto peer = SmtpPeer::Start(received_);
  ASSERT_NE(peer, nullptr);
  MailOptions o = Options(peer->url());
  o.require_tls = true;
  auto mailer = Make(o);
  ASSERT_NE(mailer, nullptr);
  ASSERT_OK(mailer->Send(SampleMessage()));
  ASSERT_TRUE(log_.WaitFor("\"event\":\"mail_delivery_failed\"", 2, 5s));
  mailer.reset();
  EXPECT_TRUE(ListEml(received_).empty());
  EXPECT_EQ(ListEml(outbox_).size(), 1u);
  ExpectNoSecretsIn(log_.Text(), SampleMessage());
}

// ---- OutboxSmtpMailer (mail/outbox.h) over an in-memory Outbox ---------------------------------
// The store-backed outbox is tested in service/mail_outbox_test.cc; here the mailer's side of the
// contract: what it calls for a delivery, a retry and a permanent rejection.

class MemoryOutbox final : public Outbox {
 public:
  Status Put(std::string_view id, std::string_view content) override {
    std::lock_guard lock(mu_);
    items_[std::string(id)] =
        Item{std::string(content), 0, false, std::chrono::steady_clock::now()};
    return Status::Ok();
  }
  Result<std::optional<OutboxEntry>> Claim(std::chrono::milliseconds* next_due_in) override {
    std::lock_guard lock(mu_);
    if (next_due_in != nullptr) {
      *next_due_in = 10ms;
    }
    for (auto& [id, item] : items_) {
      if (!item.claimed && item.due <= std::chrono::steady_clock::now()) {
        item.claimed = true;
        ++item.attempts;
        return std::optional<OutboxEntry>(OutboxEntry{id, item.content, item.attempts, id});
      }
    }
    return std::optional<OutboxEntry>();
  }
  Status Delivered(const OutboxEntry& e) override {
    std::lock_guard lock(mu_);
    items_.erase(e.claim);
    return Status::Ok();
  }
  Status Rejected(const OutboxEntry& e, long smtp_code) override {
    std::lock_guard lock(mu_);
    items_.erase(e.claim);
    rejected_codes_.push_back(smtp_code);
    return Status::Ok();
  }
  Status Retry(const OutboxEntry& e, std::chrono::milliseconds delay) override {
    std::lock_guard lock(mu_);
    Item& item = items_.at(e.claim);
    item.claimed = false;
    item.due = std::chrono::steady_clock::now() + delay;
    return Status::Ok();
  }
  Result<size_t> Count() override {
    std::lock_guard lock(mu_);
    return items_.size();
  }
  std::vector<long> rejected_codes() {
    std::lock_guard lock(mu_);
    return rejected_codes_;
  }

 private:
  struct Item {
    std::string content;
    uint64_t attempts = 0;
    bool claimed = false;
    std::chrono::steady_clock::time_point due;
  };
  std::mutex mu_;
  std::map<std::string, Item> items_;
  std::vector<long> rejected_codes_;
};

class OutboxSmtpMailerTest : public SmtpMailerTest {
 protected:
  std::unique_ptr<OutboxSmtpMailer> MakeOutboxMailer(const std::string& url) {
    auto m = OutboxSmtpMailer::Create(Options(url), outbox_store_, log_.logger(), 20ms);
    EXPECT_OK(m);
    return m.ok() ? std::move(m).value() : nullptr;
  }
  MemoryOutbox outbox_store_;
};

TEST_F(OutboxSmtpMailerTest, DeliversThroughTheOutboxAfterRetriesWithBackoff) {
  auto peer = SmtpPeer::Start(received_, {"--fail-first", "2"});
  ASSERT_NE(peer, nullptr);
  auto mailer = MakeOutboxMailer(peer->url());
  ASSERT_NE(mailer, nullptr);
  Message m = SampleMessage();
  ASSERT_OK(mailer->Send(m));
  ASSERT_OK(mailer->Flush(10s));
  auto got = ListEml(received_);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(ReadEnvelope(received_ + "/" + got[0])["transaction"], 3);
  EXPECT_EQ(ReadEnvelope(received_ + "/" + got[0])["rcpt_to"], nlohmann::json::array({m.to}));
  EXPECT_EQ(Decode(ReadFile(received_ + "/" + got[0])).text, Crlf(m.text));
  EXPECT_TRUE(ListEml(outbox_).empty());  // the directory is not used
  mailer.reset();
  std::string log = log_.Text();
  EXPECT_EQ(log_.Count("\"event\":\"mail_delivery_failed\""), 2u) << log;
  EXPECT_NE(log.find("\"retry_in_ms\":50"), std::string::npos) << log;
  EXPECT_NE(log.find("\"retry_in_ms\":100"), std::string::npos) << log;
  EXPECT_NE(log.find("\"attempts\":3"), std::string::npos) << log;
  ExpectNoSecretsIn(log, m);
}

TEST_F(OutboxSmtpMailerTest, APermanentRejectionIsDroppedOnceAndNeverRetried) {
  auto peer = SmtpPeer::Start(received_, {"--fail-first", "1", "--fail-code", "550"});
  ASSERT_NE(peer, nullptr);
  auto mailer = MakeOutboxMailer(peer->url());
  ASSERT_NE(mailer, nullptr);
  ASSERT_OK(mailer->Send(SampleMessage("first")));
  ASSERT_OK(mailer->Flush(10s));
  ASSERT_OK(mailer->Send(SampleMessage("second")));
  ASSERT_OK(mailer->Flush(10s));
  auto got = ListEml(received_);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(Decode(ReadFile(received_ + "/" + got[0])).subject, "second");
  EXPECT_EQ(ReadEnvelope(received_ + "/" + got[0])["transaction"], 2);
  EXPECT_EQ(outbox_store_.rejected_codes(), std::vector<long>{550});
  mailer.reset();
  EXPECT_EQ(log_.Count("\"event\":\"mail_delivery_rejected\""), 1u) << log_.Text();
}

TEST_F(OutboxSmtpMailerTest, RejectsABadMessageWithoutQueueingIt) {
  auto mailer = MakeOutboxMailer("smtp://127.0.0.1:" + std::to_string(UnusedPort()));
  ASSERT_NE(mailer, nullptr);
  Message m = SampleMessage();
  m.to = "a@b.example\r\nBcc: x@y.example";
  EXPECT_EQ(mailer->Send(m).code(), Code::kInvalidArgument);
  EXPECT_EQ(*outbox_store_.Count(), 0u);
}

}  // namespace
}  // namespace otd::mail
