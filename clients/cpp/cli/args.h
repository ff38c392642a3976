#pragma once
// The opentoken CLI's argument parsing, secret sources and settings (profiles, environment).
// Pure where it can be (unit tested in args_test.cc); file and terminal access is isolated in
// ReadSecret and the *File functions.
//
// * Options may come anywhere after the command; `--name=value` and `--name value` both work;
//   `--` ends the options. Each command accepts the global options plus its own.
// * Secrets are never taken from the command line: --password, --secret, --totp, --totp-key,
//   --bearer and --mail-code are refused (usage error) with a message naming the sources that
//   are accepted: --X-file FILE, --X-fd N, the OPENTOKEN_X environment variable, or a prompt on
//   the terminal with echo off.

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "opentoken/client.h"

namespace opentoken::cli {

// Exit codes (documented in clients/cpp/README.md and `opentoken --help`).
inline constexpr int kExitOk = 0;
inline constexpr int kExitRefused = 1;    // the server said no (HTTP 4xx)
inline constexpr int kExitUsage = 2;      // bad command line, secret on it, no daemon configured
inline constexpr int kExitTransport = 3;  // connect/TLS/I-O failure, HTTP 5xx, unexpected reply
inline constexpr int kExitLocal = 4;      // a local file or the terminal could not be used

int ExitCodeFor(const Error& e);

struct Args {
  std::string command;                  // e.g. "access-code"
  std::string sub;                      // e.g. "create" for access-code/access-token
  std::vector<std::string> positional;  // after command (and sub)
  std::map<std::string, std::vector<std::string>> options;  // "--name" -> values ("" for flags)
  bool Has(std::string_view name) const;
  std::string Get(std::string_view name, std::string fallback = {}) const;  // last value
  std::vector<std::string> All(std::string_view name) const;
};

// Parses argv (without the program name). Commands without a sub-command: everything after
// the command is positional or an option. Errors are kUsage with a readable message.
Result<Args> ParseArgs(const std::vector<std::string>& argv);

// The usage text of one command ("" or unknown: the overview).
std::string UsageText(std::string_view command);

using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
EnvLookup ProcessEnv();

// One kind of secret: kind "password" reads --password-file, --password-fd, OPENTOKEN_PASSWORD.
struct SecretKind {
  std::string name;    // "password", "secret", "totp", "bearer", "mail-code"
  std::string env;     // "OPENTOKEN_PASSWORD"
  std::string prompt;  // "Password: "; empty: never prompt
};

// Reads a secret from, in order: --NAME-fd N (one line), --NAME-file FILE (its content without
// the final newline), the environment variable, the prompt (on /dev/tty, echo off). nullopt
// inside the Result when none is given and prompting is impossible or not wanted.
Result<std::optional<Secret>> ReadSecret(const Args& args, const SecretKind& kind,
                                         const EnvLookup& env, bool allow_prompt);
// Reads one line from fd (without its newline), or everything up to EOF if no newline.
Result<Secret> ReadLineFromFd(int fd);
// The content of a file without one trailing "\n" or "\r\n".
Result<Secret> ReadSecretFile(const std::string& path);
// Prompts on /dev/tty with echo off.
Result<Secret> Prompt(const std::string& text);

// Where things live for one profile.
struct Paths {
  std::string config;   // user-written profiles
  std::string state;    // CLI-written: account, pending registration, saved access code (0600)
  std::string session;  // CLI-written: the login cookie (0600)
};
Result<Paths> PathsFor(const std::string& profile, const std::string& config_override,
                       const EnvLookup& env);

// Settings after combining flags > environment > profile (config file) > state file.
struct Settings {
  std::string profile;
  Endpoint endpoint;
  std::string account;
  std::string access_code;
  std::string secret_file;   // from the profile; a source for the access-code secret
  std::string saved_secret;  // from the state file (access-code create --save); wiped by caller
  std::string registration;  // pending registration href (from the state file)
  std::string format = "text";
  Paths paths;
};
// config: the parsed config file (or null); state: the parsed state file (or null).
Result<Settings> Resolve(const Args& args, const EnvLookup& env, const nlohmann::json& config,
                         const nlohmann::json& state, const Paths& paths);
// The profile name: --profile, OPENTOKEN_PROFILE, the config's "profile", else "default".
Result<std::string> ProfileName(const Args& args, const EnvLookup& env,
                                const nlohmann::json& config);

// JSON file helpers. LoadJsonFile: null json when the file does not exist.
Result<nlohmann::json> LoadJsonFile(const std::string& path);
// Writes atomically with mode 0600, creating parent directories with mode 0700.
Status WritePrivateFile(const std::string& path, const std::string& content);

}  // namespace opentoken::cli
