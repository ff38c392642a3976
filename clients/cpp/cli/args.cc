// Argument parsing, usage texts, secret sources, settings and private files of the CLI.
#include "cli/args.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <utility>

namespace opentoken::cli {
namespace {

Error UsageError(std::string message) {
  return Error{Error::Kind::kUsage, 0, std::move(message), {}};
}

Error LocalError(std::string message) {
  return Error{Error::Kind::kLocal, 0, std::move(message), {}};
}

struct CommandSpec {
  std::string_view name;
  std::vector<std::string_view> subs;     // empty: no sub-command
  std::vector<std::string_view> options;  // besides the global ones
  std::string_view usage;
};

constexpr std::string_view kGlobalHelp =
    "Global options (any command):\n"
    "  --socket PATH       the daemon's Unix socket              (OPENTOKEN_SOCKET)\n"
    "  --url https://H:P   the daemon's TLS listener             (OPENTOKEN_URL)\n"
    "  --cacert FILE       PEM certificate(s) to trust for --url (OPENTOKEN_CACERT)\n"
    "  --profile NAME      a profile of the config file          (OPENTOKEN_PROFILE)\n"
    "  --config FILE       the config file                       (OPENTOKEN_CONFIG)\n"
    "  --format text|json  output format, default text           (OPENTOKEN_FORMAT)\n"
    "  --timeout SECONDS   deadline of each request, default 60  (OPENTOKEN_TIMEOUT)\n"
    "  -h, --help          this help, or a command's: opentoken COMMAND --help\n"
    "  --version           print the version\n";

const std::vector<CommandSpec>& Commands() {
  static const std::vector<CommandSpec> kCommands = {
      {"register",
       {},
       {"--password-file", "--password-fd", "--no-qr"},
       "opentoken register EMAIL [--password-file FILE | --password-fd N] [--no-qr]\n"
       "  Registers an account: asks for a new password (twice, echo off), prints the TOTP key\n"
       "  (base32 and otpauth:// URI) and its QR code (UTF-8 half blocks; scan it with an\n"
       "  authenticator app), sets the password and proves the key. The daemon then mails a\n"
       "  confirmation link: run `opentoken confirm LINK`. The pending registration is kept in\n"
       "  the profile's state file so that `confirm CODE` works too.\n"},
      {"confirm",
       {},
       {"--mail"},
       "opentoken confirm LINK-or-CODE\n"
       "opentoken confirm --mail FILE-or-DIR\n"
       "  Confirms a registration with the mailed link (or its path, or the bare code after\n"
       "  `register` from this profile). --mail reads the link from an .eml file, or from the\n"
       "  newest .eml holding one in a spool directory (e.g. var/mail of scripts/serve).\n"
       "  Prints and remembers the account id.\n"},
      {"login",
       {},
       {"--account", "--password-file", "--password-fd", "--totp-file", "--totp-fd",
        "--totp-key-file"},
       "opentoken login [--account ID] [--password-file FILE | --password-fd N]\n"
       "                [--totp-file FILE | --totp-fd N | --totp-key-file FILE]\n"
       "  Logs in with the password and a TOTP code (asked on the terminal when not given;\n"
       "  OPENTOKEN_PASSWORD / OPENTOKEN_TOTP). --totp-key-file computes the code from the key\n"
       "  (base32 or hex; for automation). The session cookie is kept, mode 0600, in\n"
       "  $XDG_RUNTIME_DIR/opentoken/PROFILE.session (else ~/.cache/opentoken/). Sessions last\n"
       "  10 minutes by default (accounts.session_lifetime_seconds).\n"},
      {"logout",
       {},
       {"--account"},
       "opentoken logout\n  Ends the session on the server and removes the session file.\n"},
      {"whoami",
       {},
       {"--account", "--bearer-file", "--bearer-fd"},
       "opentoken whoami\n  Prints the account id and e-mail address of the session (or "
       "bearer).\n"},
      {"access-code",
       {"create", "list", "revoke"},
       {"--account", "--description", "--save", "--bearer-file", "--bearer-fd"},
       "opentoken access-code create [--description TEXT] [--save]\n"
       "opentoken access-code list\n"
       "opentoken access-code revoke CODE\n"
       "  Access code pairs sign the data commands. `create` prints the code and its secret\n"
       "  (shown once); --save also stores both in the profile's state file (0600), so that\n"
       "  tokenize/detokenize/delete/sign/request need nothing more. Uses the login session or\n"
       "  a bearer access token (--bearer-file/--bearer-fd/OPENTOKEN_BEARER).\n"},
      {"access-token",
       {"create", "list", "get", "update", "delete", "email-request", "email-revoke-request",
        "email-revoke"},
       {"--name", "--description", "--scope", "--expires", "--status", "--bearer-file",
        "--bearer-fd", "--mail-code-file", "--mail-code-fd"},
       "opentoken access-token create --name NAME [--description TEXT] [--scope SCOPE]...\n"
       "                              [--expires yyyy-mm-ddThh:mm:ss.000Z] [--status S]\n"
       "opentoken access-token list | get ID | delete ID\n"
       "opentoken access-token update ID [--name NAME] [--status active|inactive]\n"
       "opentoken access-token email-request EMAIL\n"
       "opentoken access-token email-revoke-request EMAIL\n"
       "opentoken access-token email-revoke EMAIL [--mail-code-file FILE | --mail-code-fd N]\n"
       "  Bearer access tokens (/access-tokens) with the login session or a bearer\n"
       "  (--bearer-file/--bearer-fd/OPENTOKEN_BEARER); `create` prints the token string once.\n"
       "  The e-mail flow (/v1/access_tokens): email-request mails a token to an account's\n"
       "  address; email-revoke-request mails a deletion code; email-revoke uses that code\n"
       "  (OPENTOKEN_MAIL_CODE, or asked) to revoke the address's e-mailed tokens.\n"},
      {"tokenize",
       {},
       {"--account", "--access-code", "--secret-file", "--secret-fd", "--public", "--expires",
        "--content-type", "--input"},
       "opentoken tokenize [--public] [--expires T] [--content-type TYPE] [--input FILE] < FILE\n"
       "  Tokenizes the bytes of standard input (or --input) and prints the token id.\n"
       "  --content-type defaults to application/octet-stream; --expires takes\n"
       "  yyyy-mm-ddThh:mm:ssZ or a duration such as 90s, 15m, 12h, 30d.\n"
       "  Signed with the access code (--access-code / OPENTOKEN_ACCESS_CODE / profile / saved)\n"
       "  and its secret (--secret-file FILE, --secret-fd N, OPENTOKEN_SECRET, the profile's\n"
       "  secret_file, or the one saved by `access-code create --save`).\n"},
      {"detokenize",
       {},
       {"--account", "--access-code", "--secret-file", "--secret-fd", "--output"},
       "opentoken detokenize ID [--output FILE] > FILE\n"
       "  Writes the token's exact bytes to standard output (or --output, created 0600).\n"
       "  With --format json: {\"id\", \"contentType\", \"dataBase64\"}.\n"},
      {"delete",
       {},
       {"--account", "--access-code", "--secret-file", "--secret-fd"},
       "opentoken delete ID\n  Deletes a token (signed).\n"},
      {"sign",
       {},
       {"--account", "--access-code", "--secret-file", "--secret-fd", "--content-type", "--data"},
       "opentoken sign METHOD PATH [--content-type TYPE] [--data @FILE|@-|TEXT]\n"
       "  Prints the headers of an OT1-signed request, one `Name: value` per line, for\n"
       "  `curl -H @headers.txt` (the signature covers the body, so sign the exact bytes you\n"
       "  send: curl --data-binary @FILE). The date is valid for about 5 minutes.\n"},
      {"request",
       {},
       {"--account", "--access-code", "--secret-file", "--secret-fd", "--content-type", "--data",
        "--include"},
       "opentoken request METHOD PATH [--content-type TYPE] [--data @FILE|@-|TEXT] [--include]\n"
       "  Sends one OT1-signed request (a signed curl) and writes the reply body to standard\n"
       "  output; --include prints the status line and headers first. The exit code follows\n"
       "  the status (2xx: 0, 4xx: 1, 5xx: 3).\n"},
      {"help", {}, {}, "opentoken help [COMMAND]\n  Prints the help of a command.\n"},
  };
  return kCommands;
}

const CommandSpec* FindCommand(std::string_view name) {
  for (const CommandSpec& c : Commands()) {
    if (c.name == name) {
      return &c;
    }
  }
  return nullptr;
}

const std::set<std::string_view>& ValueOptions() {
  static const std::set<std::string_view> kSet = {
      "--socket",         "--url",           "--cacert",        "--profile",     "--config",
      "--format",         "--password-file", "--password-fd",   "--mail",        "--account",
      "--totp-file",      "--totp-fd",       "--totp-key-file", "--description", "--bearer-file",
      "--bearer-fd",      "--name",          "--scope",         "--expires",     "--status",
      "--mail-code-file", "--mail-code-fd",  "--access-code",   "--secret-file", "--secret-fd",
      "--content-type",   "--input",         "--output",        "--data",        "--timeout"};
  return kSet;
}

const std::set<std::string_view>& GlobalOptions() {
  static const std::set<std::string_view> kSet = {"--socket",  "--url",     "--cacert",
                                                  "--profile", "--config",  "--format",
                                                  "--help",    "--version", "--timeout"};
  return kSet;
}

// Options that would put a secret on the command line, and where the secret may come from.
std::optional<std::string> RefusedSecret(std::string_view name) {
  static const std::vector<std::pair<std::string_view, std::string_view>> kRefused = {
      {"--password", "--password-file FILE, --password-fd N, OPENTOKEN_PASSWORD or the prompt"},
      {"--secret",
       "--secret-file FILE, --secret-fd N, OPENTOKEN_SECRET, a profile's "
       "secret_file or `access-code create --save`"},
      {"--totp", "--totp-file FILE, --totp-fd N, OPENTOKEN_TOTP, --totp-key-file or the prompt"},
      {"--totp-key", "--totp-key-file FILE"},
      {"--bearer", "--bearer-file FILE, --bearer-fd N or OPENTOKEN_BEARER"},
      {"--token", "--bearer-file FILE, --bearer-fd N or OPENTOKEN_BEARER"},
      {"--mail-code", "--mail-code-file FILE, --mail-code-fd N, OPENTOKEN_MAIL_CODE or the prompt"},
  };
  for (const auto& [refused, instead] : kRefused) {
    if (name == refused) {
      return std::string(name) +
             ": secrets are never taken on the command line (other users see it in ps and "
             "/proc, and it stays in shell history); use " +
             std::string(instead);
    }
  }
  return std::nullopt;
}

}  // namespace

int ExitCodeFor(const Error& e) {
  switch (e.kind) {
    case Error::Kind::kUsage: return kExitUsage;
    case Error::Kind::kLocal: return kExitLocal;
    case Error::Kind::kTransport: return kExitTransport;
    case Error::Kind::kHttp: return e.status >= 500 ? kExitTransport : kExitRefused;
  }
  return kExitTransport;
}

bool Args::Has(std::string_view name) const { return options.count(std::string(name)) > 0; }

std::string Args::Get(std::string_view name, std::string fallback) const {
  auto it = options.find(std::string(name));
  if (it == options.end() || it->second.empty()) {
    return fallback;
  }
  return it->second.back();
}

std::vector<std::string> Args::All(std::string_view name) const {
  auto it = options.find(std::string(name));
  return it == options.end() ? std::vector<std::string>{} : it->second;
}

Result<Args> ParseArgs(const std::vector<std::string>& argv) {
  Args a;
  std::vector<std::string> words;
  bool options_done = false;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    // Only --name is an option (and -h): ids and codes are base64url and may start with '-'.
    if (options_done || (arg.rfind("--", 0) != 0 && arg != "-h")) {
      words.push_back(arg);
      continue;
    }
    if (arg == "--") {
      options_done = true;
      continue;
    }
    std::string name = arg;
    std::optional<std::string> inline_value;
    if (arg == "-h") {
      name = "--help";
    }
    const size_t eq = name.find('=');
    if (eq != std::string::npos) {
      inline_value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    if (std::optional<std::string> refused = RefusedSecret(name)) {
      return UsageError(*refused);
    }
    if (ValueOptions().count(name) > 0) {
      if (!inline_value) {
        if (i + 1 >= argv.size()) {
          return UsageError(name + " needs a value");
        }
        inline_value = argv[++i];
      }
      a.options[name].push_back(*inline_value);
    } else {
      if (inline_value) {
        return UsageError(name + " takes no value");
      }
      if (name != "--help" && name != "--version" && name != "--save" && name != "--public" &&
          name != "--no-qr" && name != "--include") {
        return UsageError("unknown option " + name +
                          " (see opentoken --help; an id that starts with - goes after --)");
      }
      a.options[name].push_back("");
    }
  }
  if (words.empty()) {
    return a;  // --help / --version / nothing: the caller decides
  }
  a.command = words[0];
  const CommandSpec* spec = FindCommand(a.command);
  if (spec == nullptr) {
    return UsageError("unknown command '" + a.command + "' (see opentoken --help)");
  }
  size_t first = 1;
  if (!spec->subs.empty() && !a.Has("--help")) {
    if (words.size() < 2) {
      return UsageError(a.command + " needs a sub-command: " + [&] {
        std::string s;
        for (std::string_view sub : spec->subs) {
          s += (s.empty() ? "" : "|") + std::string(sub);
        }
        return s;
      }());
    }
    a.sub = words[1];
    bool known = false;
    for (std::string_view sub : spec->subs) {
      known = known || sub == a.sub;
    }
    if (!known) {
      return UsageError("unknown sub-command '" + a.command + " " + a.sub + "'");
    }
    first = 2;
  }
  a.positional.assign(words.begin() + static_cast<std::ptrdiff_t>(std::min(first, words.size())),
                      words.end());
  for (const auto& [name, values] : a.options) {
    bool allowed = GlobalOptions().count(name) > 0;
    for (std::string_view o : spec->options) {
      allowed = allowed || o == name;
    }
    if (!allowed) {
      return UsageError(a.command + ": unknown option " + name + " (see opentoken " + a.command +
                        " --help)");
    }
  }
  return a;
}

std::string UsageText(std::string_view command) {
  if (const CommandSpec* spec = FindCommand(command)) {
    std::string usage = "Usage: " + std::string(spec->usage);
    for (size_t at = usage.find("\nopentoken "); at != std::string::npos;
         at = usage.find("\nopentoken ", at + 1)) {
      usage.insert(at + 1, "       ");  // align further forms under the first
    }
    return usage + "\n" + std::string(kGlobalHelp);
  }
  std::string s =
      "opentoken: the command-line client of opentokend (OpenToken API)\n\n"
      "Usage: opentoken [GLOBAL OPTIONS] COMMAND [ARGS]\n\n"
      "Account:       register EMAIL | confirm LINK-or-CODE | login | logout | whoami\n"
      "Access codes:  access-code create|list|revoke\n"
      "Access tokens: access-token create|list|get|update|delete|email-request|\n"
      "               email-revoke-request|email-revoke\n"
      "Data:          tokenize [--public] [--expires T] [--content-type T] < FILE\n"
      "               detokenize ID > FILE | delete ID\n"
      "Signing:       sign METHOD PATH [--data @FILE] | request METHOD PATH [--data @FILE]\n\n";
  s += kGlobalHelp;
  s += "\nSecrets are never read from the command line: each has --X-file FILE, --X-fd N, an\n"
       "OPENTOKEN_X variable (PASSWORD, TOTP, SECRET, BEARER, MAIL_CODE) or a terminal prompt.\n"
       "Other variables: OPENTOKEN_ACCOUNT, OPENTOKEN_ACCESS_CODE.\n\n"
       "Profiles: $OPENTOKEN_CONFIG, else $XDG_CONFIG_HOME/opentoken/config.json (default\n"
       "~/.config/opentoken/config.json):\n"
       "  {\"profile\": \"local\", \"profiles\": {\"local\": {\"socket\": "
       "\"/path/opentokend.sock\",\n"
       "   \"url\": \"https://...\", \"cacert\": \"...\", \"account\": \"...\", \"access_code\": "
       "\"...\",\n"
       "   \"secret_file\": \"...\", \"format\": \"text\"}}}\n"
       "State written by the CLI (0600): $XDG_STATE_HOME/opentoken/PROFILE.json (default\n"
       "~/.local/state/opentoken/), the session in $XDG_RUNTIME_DIR/opentoken/PROFILE.session\n"
       "(else ~/.cache/opentoken/).\n\n"
       "Exit codes: 0 ok; 1 the server refused (HTTP 4xx: credentials, not found, invalid,\n"
       "rate limited); 2 usage (bad arguments, a secret on the command line, no daemon\n"
       "configured); 3 transport (cannot connect, TLS, HTTP 5xx, unexpected reply); 4 local\n"
       "(a file or the terminal could not be used).\n\n"
       "`opentoken COMMAND --help` for a command's options.\n";
  return s;
}

EnvLookup ProcessEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) {
      return std::nullopt;
    }
    return std::string(v);
  };
}

Result<Secret> ReadLineFromFd(int fd) {
  std::string line;
  char c = 0;
  for (;;) {
    const ssize_t n = ::read(fd, &c, 1);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      Wipe(line);
      return LocalError("reading file descriptor " + std::to_string(fd) + ": " +
                        std::strerror(errno));
    }
    if (n == 0 || c == '\n') {
      break;
    }
    line.push_back(c);
    if (line.size() > 64 * 1024) {
      Wipe(line);
      return LocalError("file descriptor " + std::to_string(fd) + ": line too long");
    }
  }
  if (!line.empty() && line.back() == '\r') {
    line.pop_back();
  }
  return Secret(std::move(line));
}

Result<Secret> ReadSecretFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return LocalError(path + ": " + std::strerror(errno));
  }
  std::string content;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    content.append(buf, static_cast<size_t>(n));
  }
  OPENSSL_cleanse(buf, sizeof buf);
  ::close(fd);
  if (!content.empty() && content.back() == '\n') {
    content.pop_back();
    if (!content.empty() && content.back() == '\r') {
      content.pop_back();
    }
  }
  return Secret(std::move(content));
}

Result<Secret> Prompt(const std::string& text) {
  const int fd = ::open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    return LocalError("no terminal to ask on");
  }
  termios old{};
  const bool is_tty = ::tcgetattr(fd, &old) == 0;
  if (is_tty) {
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    quiet.c_lflag |= ECHONL;
    ::tcsetattr(fd, TCSAFLUSH, &quiet);
  }
  ssize_t ignored = ::write(fd, text.data(), text.size());
  (void)ignored;
  Result<Secret> line = ReadLineFromFd(fd);
  if (is_tty) {
    ::tcsetattr(fd, TCSAFLUSH, &old);
  }
  ::close(fd);
  return line;
}

Result<std::optional<Secret>> ReadSecret(const Args& args, const SecretKind& kind,
                                         const EnvLookup& env, bool allow_prompt) {
  const std::string fd_opt = "--" + kind.name + "-fd";
  const std::string file_opt = "--" + kind.name + "-file";
  if (args.Has(fd_opt)) {
    const std::string v = args.Get(fd_opt);
    char* end = nullptr;
    const long fd = std::strtol(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || fd < 0 || fd > 65535) {
      return UsageError(fd_opt + " needs a file descriptor number");
    }
    Result<Secret> s = ReadLineFromFd(static_cast<int>(fd));
    if (!s.ok()) {
      return s.error();
    }
    return std::optional<Secret>(std::move(*s));
  }
  if (args.Has(file_opt)) {
    Result<Secret> s = ReadSecretFile(args.Get(file_opt));
    if (!s.ok()) {
      return s.error();
    }
    return std::optional<Secret>(std::move(*s));
  }
  if (std::optional<std::string> v = env(kind.env)) {
    Secret s(std::move(*v));
    return std::optional<Secret>(std::move(s));
  }
  if (allow_prompt && !kind.prompt.empty() && ::isatty(STDIN_FILENO) != 0) {
    Result<Secret> s = Prompt(kind.prompt);
    if (!s.ok()) {
      return s.error();
    }
    return std::optional<Secret>(std::move(*s));
  }
  return std::optional<Secret>();
}

Result<Paths> PathsFor(const std::string& profile, const std::string& config_override,
                       const EnvLookup& env) {
  const std::string home = env("HOME").value_or("");
  auto base = [&](const char* var, const char* fallback) -> std::string {
    std::optional<std::string> v = env(var);
    if (v && !v->empty() && (*v)[0] == '/') {
      return *v;
    }
    return home.empty() ? std::string() : home + "/" + fallback;
  };
  Paths p;
  const std::string config_home = base("XDG_CONFIG_HOME", ".config");
  const std::string state_home = base("XDG_STATE_HOME", ".local/state");
  std::string runtime = base("XDG_RUNTIME_DIR", ".cache");
  if (config_home.empty() || state_home.empty() || runtime.empty()) {
    return LocalError("HOME is not set (needed for the config and state files)");
  }
  p.config = !config_override.empty()                       ? config_override
             : env("OPENTOKEN_CONFIG").value_or("").empty() ? config_home + "/opentoken/config.json"
                                                            : *env("OPENTOKEN_CONFIG");
  p.state = state_home + "/opentoken/" + profile + ".json";
  p.session = runtime + "/opentoken/" + profile + ".session";
  return p;
}

Result<std::string> ProfileName(const Args& args, const EnvLookup& env,
                                const nlohmann::json& config) {
  std::string name = args.Get("--profile");
  if (name.empty()) {
    name = env("OPENTOKEN_PROFILE").value_or("");
  }
  if (name.empty() && config.is_object() && config.contains("profile") &&
      config["profile"].is_string()) {
    name = config["profile"].get<std::string>();
  }
  if (name.empty()) {
    name = "default";
  }
  for (char c : name) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_';
    if (!ok || name.size() > 64) {
      return UsageError("profile names are [A-Za-z0-9_-]{1,64}");
    }
  }
  return name;
}

Result<Settings> Resolve(const Args& args, const EnvLookup& env, const nlohmann::json& config,
                         const nlohmann::json& state, const Paths& paths) {
  Result<std::string> profile = ProfileName(args, env, config);
  if (!profile.ok()) {
    return profile.error();
  }
  Settings s;
  s.profile = *profile;
  s.paths = paths;
  nlohmann::json prof = nlohmann::json::object();
  if (config.is_object() && config.contains("profiles") && config["profiles"].is_object() &&
      config["profiles"].contains(s.profile)) {
    prof = config["profiles"][s.profile];
    if (!prof.is_object()) {
      return UsageError(paths.config + ": profiles." + s.profile + " must be an object");
    }
  }
  auto pick = [&](std::string_view flag, const char* var, const char* key,
                  const nlohmann::json& fallback_doc) -> Result<std::string> {
    if (!flag.empty() && args.Has(flag)) {
      return args.Get(flag);
    }
    if (std::optional<std::string> v = env(var); v && !v->empty()) {
      return *v;
    }
    for (const nlohmann::json* doc : {static_cast<const nlohmann::json*>(&prof), &fallback_doc}) {
      if (doc->is_object() && doc->contains(key)) {
        if ((*doc)[key].is_number_integer()) {
          return std::to_string((*doc)[key].get<long long>());  // "timeout": 30
        }
        if (!(*doc)[key].is_string()) {
          return UsageError(std::string(key) + " in the profile must be a string");
        }
        return (*doc)[key].get<std::string>();
      }
    }
    return std::string();
  };
  const nlohmann::json none;
  std::string timeout;
  struct Field {
    std::string_view flag;
    const char* var;
    const char* key;
    const nlohmann::json* fallback;
    std::string* out;
  };
  const Field fields[] = {
      {"--socket", "OPENTOKEN_SOCKET", "socket", &none, &s.endpoint.socket_path},
      {"--url", "OPENTOKEN_URL", "url", &none, &s.endpoint.url},
      {"--cacert", "OPENTOKEN_CACERT", "cacert", &none, &s.endpoint.cacert},
      {"--account", "OPENTOKEN_ACCOUNT", "account", &state, &s.account},
      {"--access-code", "OPENTOKEN_ACCESS_CODE", "access_code", &state, &s.access_code},
      {"", "", "secret_file", &none, &s.secret_file},
      {"--format", "OPENTOKEN_FORMAT", "format", &none, &s.format},
      {"--timeout", "OPENTOKEN_TIMEOUT", "timeout", &none, &timeout},
  };
  for (const Field& f : fields) {
    Result<std::string> v = pick(f.flag, f.var, f.key, *f.fallback);
    if (!v.ok()) {
      return v.error();
    }
    *f.out = std::move(*v);
  }
  // A --socket or --url on the command line wins over the other one from the environment or
  // the profile.
  if (args.Has("--socket") && !args.Has("--url")) {
    s.endpoint.url.clear();
  } else if (args.Has("--url") && !args.Has("--socket")) {
    s.endpoint.socket_path.clear();
  } else if (args.Has("--url") && args.Has("--socket")) {
    return UsageError("give --socket or --url, not both");
  } else if (!s.endpoint.url.empty() && !s.endpoint.socket_path.empty()) {
    const bool url_from_env = env("OPENTOKEN_URL").has_value();
    const bool socket_from_env = env("OPENTOKEN_SOCKET").has_value();
    if (url_from_env && !socket_from_env) {
      s.endpoint.socket_path.clear();
    } else if (socket_from_env && !url_from_env) {
      s.endpoint.url.clear();
    } else {
      return UsageError("both a socket and a URL are configured: pass --socket or --url");
    }
  }
  if (!timeout.empty()) {
    char* end = nullptr;
    const long seconds = std::strtol(timeout.c_str(), &end, 10);
    if (*end != '\0' || seconds < 1 || seconds > 3600) {
      return UsageError("--timeout must be 1..3600 seconds");
    }
    s.endpoint.timeout_seconds = static_cast<int>(seconds);
  }
  if (s.format.empty()) {
    s.format = "text";
  }
  if (s.format != "text" && s.format != "json") {
    return UsageError("--format must be text or json");
  }
  if (state.is_object()) {
    if (state.contains("registration") && state["registration"].is_string()) {
      s.registration = state["registration"].get<std::string>();
    }
    // The saved secret belongs to the saved code only.
    if (state.contains("secret") && state["secret"].is_string() && state.contains("access_code") &&
        state["access_code"] == s.access_code) {
      s.saved_secret = state["secret"].get<std::string>();
    }
  }
  return s;
}

Result<nlohmann::json> LoadJsonFile(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      return nlohmann::json();
    }
    return LocalError(path + ": " + std::strerror(errno));
  }
  Result<Secret> text = ReadSecretFile(path);
  if (!text.ok()) {
    return text.error();
  }
  nlohmann::json doc = nlohmann::json::parse(text->Reveal(), nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return UsageError(path + ": not a JSON object");
  }
  return doc;
}

namespace {
Status MakeDirs(const std::string& dir) {
  if (dir.empty()) {
    return Ok();
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    return Ok();
  }
  const size_t slash = dir.rfind('/');
  if (slash != std::string::npos && slash > 0) {
    Status parent = MakeDirs(dir.substr(0, slash));
    if (!parent.ok()) {
      return parent;
    }
  }
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return LocalError(dir + ": " + std::strerror(errno));
  }
  return Ok();
}
}  // namespace

Status WritePrivateFile(const std::string& path, const std::string& content) {
  const size_t slash = path.rfind('/');
  if (slash != std::string::npos) {
    Status dirs = MakeDirs(path.substr(0, slash));
    if (!dirs.ok()) {
      return dirs;
    }
  }
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    return LocalError(tmp + ": " + std::strerror(errno));
  }
  size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      ::close(fd);
      ::unlink(tmp.c_str());
      return LocalError(path + ": write failed");
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return LocalError(path + ": " + std::strerror(errno));
  }
  return Ok();
}

}  // namespace opentoken::cli
