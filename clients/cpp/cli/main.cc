// opentoken: the command-line client of opentokend. Usage: `opentoken --help` (cli/args.cc).
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iostream>
#include <map>
#include <regex>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/qr.h"
#include "opentoken/client.h"

namespace opentoken::cli {
namespace {

using nlohmann::json;

struct Context {
  Args args;
  Settings settings;
  EnvLookup env;
  json state;  // the profile's state file (json object)
};

bool Json(const Context& c) { return c.settings.format == "json"; }

void PrintJson(const json& doc) { std::cout << doc.dump(2) << "\n" << std::flush; }

std::string Hint(const Context& c, const Error& e) {
  if (e.kind != Error::Kind::kHttp) {
    return {};
  }
  const std::string& cmd = c.args.command;
  const bool signed_cmd =
      cmd == "tokenize" || cmd == "detokenize" || cmd == "delete" || cmd == "request";
  if (e.status == 401 && signed_cmd) {
    return "the signature was refused: check the access code and its secret (a revoked code "
           "or a wrong secret), and that this machine's clock is right";
  }
  if (e.status == 401 && cmd == "login") {
    return "wrong password or TOTP code (or a code already used: wait for the next one)";
  }
  if (e.status == 401) {
    return "not logged in, or the session expired: run `opentoken login`";
  }
  if (e.status == 404 && signed_cmd) {
    return "no such token for this account (unknown, expired or deleted)";
  }
  if (e.status == 429) {
    return "rate limited: wait and try again";
  }
  return {};
}

int Fail(const Context& c, const Error& e) {
  std::string what = c.args.command.empty() ? std::string("opentoken")
                                            : "opentoken " + c.args.command +
                                                  (c.args.sub.empty() ? "" : " " + c.args.sub);
  std::string line = what + ": ";
  if (e.kind == Error::Kind::kHttp) {
    line += "the server refused (" + std::to_string(e.status) +
            (e.code.empty() ? "" : " " + e.code) + "): " + e.message;
  } else {
    line += e.message;
  }
  const std::string hint = Hint(c, e);
  if (!hint.empty()) {
    line += "\n  " + hint;
  }
  std::cerr << line << "\n";
  if (Json(c)) {
    json doc = {{"error", {{"message", e.message}, {"exitCode", ExitCodeFor(e)}}}};
    if (e.kind == Error::Kind::kHttp) {
      doc["error"]["status"] = e.status;
      doc["error"]["code"] = e.code;
    }
    PrintJson(doc);
  }
  return ExitCodeFor(e);
}

Error Usage(std::string message) { return Error{Error::Kind::kUsage, 0, std::move(message), {}}; }
Error Local(std::string message) { return Error{Error::Kind::kLocal, 0, std::move(message), {}}; }

Status SaveState(Context& c) {
  return WritePrivateFile(c.settings.paths.state, c.state.dump(2) + "\n");
}

Result<std::string> ReadAll(int fd, const std::string& what) {
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      Wipe(out);
      return Local("reading " + what + ": " + std::strerror(errno));
    }
    if (n == 0) {
      break;
    }
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

Result<std::string> ReadInputFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Local(path + ": " + std::strerror(errno));
  }
  Result<std::string> r = ReadAll(fd, path);
  ::close(fd);
  return r;
}

// --data @FILE, @- (standard input) or literal text.
Result<std::string> DataArgument(const Context& c) {
  if (!c.args.Has("--data")) {
    return std::string();
  }
  const std::string v = c.args.Get("--data");
  if (v == "@-") {
    return ReadAll(STDIN_FILENO, "standard input");
  }
  if (!v.empty() && v[0] == '@') {
    return ReadInputFile(v.substr(1));
  }
  return v;
}

Status WriteAll(int fd, std::string_view data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return Local(std::string("writing the output: ") + std::strerror(errno));
    }
    done += static_cast<size_t>(n);
  }
  return Ok();
}

Client MakeClient(const Context& c) { return Client(c.settings.endpoint); }

Status NeedEndpoint(const Context& c) {
  if (c.settings.endpoint.socket_path.empty() && c.settings.endpoint.url.empty()) {
    return Usage(
        "no daemon given: use --socket PATH or --url https://HOST:PORT (or "
        "OPENTOKEN_SOCKET / OPENTOKEN_URL, or a profile in " +
        c.settings.paths.config + ")");
  }
  return Ok();
}

// The session of this profile (cookie and account), if any.
void LoadSession(Context& c, Client& client) {
  Result<json> doc = LoadJsonFile(c.settings.paths.session);
  if (!doc.ok() || !doc->is_object()) {
    return;
  }
  if (doc->contains("cookie") && (*doc)["cookie"].is_string()) {
    std::string& cookie = (*doc)["cookie"].get_ref<std::string&>();
    client.SetCookie(Secret(cookie));
    Wipe(cookie);
  }
  if (c.settings.account.empty() && doc->contains("account") && (*doc)["account"].is_string()) {
    c.settings.account = (*doc)["account"].get<std::string>();
  }
}

// Cookie from the session file, or a bearer from --bearer-file/--bearer-fd/OPENTOKEN_BEARER.
Status Authenticate(Context& c, Client& client) {
  Result<std::optional<Secret>> bearer =
      ReadSecret(c.args, {"bearer", "OPENTOKEN_BEARER", ""}, c.env, false);
  if (!bearer.ok()) {
    return bearer.error();
  }
  LoadSession(c, client);
  if (bearer->has_value()) {
    client.SetBearer(std::move(**bearer));
  }
  return Ok();
}

Result<std::string> NeedAccount(const Context& c) {
  if (c.settings.account.empty()) {
    return Usage("no account: log in first, or give --account ID / OPENTOKEN_ACCOUNT");
  }
  return c.settings.account;
}

Result<AccessCodePair> Pair(const Context& c) {
  if (c.settings.access_code.empty()) {
    return Usage(
        "no access code: give --access-code CODE (or OPENTOKEN_ACCESS_CODE, a profile's "
        "access_code, or run `opentoken access-code create --save`)");
  }
  Result<std::optional<Secret>> secret =
      ReadSecret(c.args, {"secret", "OPENTOKEN_SECRET", ""}, c.env, false);
  if (!secret.ok()) {
    return secret.error();
  }
  if (secret->has_value()) {
    return AccessCodePair{c.settings.access_code, std::move(**secret)};
  }
  if (!c.settings.secret_file.empty()) {
    Result<Secret> s = ReadSecretFile(c.settings.secret_file);
    if (!s.ok()) {
      return s.error();
    }
    return AccessCodePair{c.settings.access_code, std::move(*s)};
  }
  if (!c.settings.saved_secret.empty()) {
    return AccessCodePair{c.settings.access_code, Secret(c.settings.saved_secret)};
  }
  if (::isatty(STDIN_FILENO) != 0 && c.args.command != "tokenize") {
    Result<Secret> s = Prompt("Access code secret: ");
    if (!s.ok()) {
      return s.error();
    }
    return AccessCodePair{c.settings.access_code, std::move(*s)};
  }
  return Usage("no secret for access code " + c.settings.access_code +
               ": use --secret-file FILE, --secret-fd N, OPENTOKEN_SECRET or a profile's "
               "secret_file");
}

Result<Secret> Password(const Context& c, bool twice) {
  Result<std::optional<Secret>> pw =
      ReadSecret(c.args, {"password", "OPENTOKEN_PASSWORD", "Password: "}, c.env, true);
  if (!pw.ok()) {
    return pw.error();
  }
  if (!pw->has_value()) {
    return Usage(
        "no password: use --password-file FILE, --password-fd N, OPENTOKEN_PASSWORD, "
        "or run on a terminal");
  }
  const bool prompted = !c.args.Has("--password-fd") && !c.args.Has("--password-file") &&
                        !c.env("OPENTOKEN_PASSWORD").has_value();
  if (twice && prompted) {
    Result<Secret> again = Prompt("Password (again): ");
    if (!again.ok()) {
      return again.error();
    }
    if (again->Reveal() != (*pw)->Reveal()) {
      return Usage("the passwords differ");
    }
  }
  if ((*pw)->Empty()) {
    return Usage("the password is empty");
  }
  return std::move(**pw);
}

// ---- commands -----------------------------------------------------------------------------

int Register(Context& c) {
  if (c.args.positional.size() != 1) {
    return Fail(c, Usage("usage: opentoken register EMAIL"));
  }
  const std::string& email = c.args.positional[0];
  Result<Secret> password = Password(c, true);
  if (!password.ok()) {
    return Fail(c, password.error());
  }
  Client client = MakeClient(c);
  Result<Registration> reg = client.Register(email);
  if (!reg.ok()) {
    return Fail(c, reg.error());
  }
  Status secured = client.Secure(*reg, *password, std::time(nullptr));
  if (!secured.ok()) {
    return Fail(c, secured.error());
  }
  c.state["registration"] = reg->href;
  Status saved = SaveState(c);
  if (!saved.ok()) {
    return Fail(c, saved.error());
  }
  if (Json(c)) {
    PrintJson(
        {{"registration", reg->href},
         {"totp",
          {{"keyBase32", reg->key_base32}, {"keyHex", reg->key_hex}, {"keyUri", reg->key_uri}}}});
    return kExitOk;
  }
  std::cout << "Registered " << email << ". Add this TOTP key to your authenticator app:\n\n"
            << "  key (base32): " << reg->key_base32 << "\n  uri: " << reg->key_uri << "\n\n";
  if (!c.args.Has("--no-qr")) {
    Result<std::string> qr = RenderQr(reg->key_uri);
    if (qr.ok()) {
      std::cout << *qr << "\n";
    }
  }
  std::cout << "A confirmation link has been mailed to " << email
            << ". Then: opentoken confirm LINK\n";
  return kExitOk;
}

std::string LinkInMail(const std::string& text) { return FindConfirmationPath(text); }

Result<std::string> LinkFromMail(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return Local(path + ": " + std::strerror(errno));
  }
  if (!S_ISDIR(st.st_mode)) {
    Result<std::string> text = ReadInputFile(path);
    if (!text.ok()) {
      return text.error();
    }
    std::string link = LinkInMail(*text);
    if (link.empty()) {
      return Usage(path + ": no confirmation link in it");
    }
    return link;
  }
  // The newest .eml holding a link.
  std::vector<std::pair<long long, std::string>> files;
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) {
    return Local(path + ": " + std::strerror(errno));
  }
  while (dirent* e = ::readdir(dir)) {
    const std::string name = e->d_name;
    if (name.size() > 4 && name.substr(name.size() - 4) == ".eml") {
      struct stat fst {};
      const std::string full = path + "/" + name;
      if (::stat(full.c_str(), &fst) == 0) {
        files.emplace_back(
            static_cast<long long>(fst.st_mtim.tv_sec) * 1'000'000'000LL + fst.st_mtim.tv_nsec,
            full);
      }
    }
  }
  ::closedir(dir);
  std::sort(files.begin(), files.end(), std::greater<>());
  for (const auto& [mtime, full] : files) {
    Result<std::string> text = ReadInputFile(full);
    if (text.ok()) {
      std::string link = LinkInMail(*text);
      if (!link.empty()) {
        return link;
      }
    }
  }
  return Usage(path + ": no mail with a confirmation link");
}

int Confirm(Context& c) {
  std::string input;
  if (c.args.Has("--mail")) {
    if (!c.args.positional.empty()) {
      return Fail(c, Usage("give LINK-or-CODE or --mail, not both"));
    }
    Result<std::string> link = LinkFromMail(c.args.Get("--mail"));
    if (!link.ok()) {
      return Fail(c, link.error());
    }
    input = *link;
  } else if (c.args.positional.size() == 1) {
    input = c.args.positional[0];
  } else {
    return Fail(c, Usage("usage: opentoken confirm LINK-or-CODE | --mail FILE-or-DIR"));
  }
  Result<std::string> path = Client::ConfirmPath(input, c.settings.registration);
  if (!path.ok()) {
    return Fail(c, path.error());
  }
  Client client = MakeClient(c);
  Result<std::string> account = client.Confirm(*path);
  if (!account.ok()) {
    return Fail(c, account.error());
  }
  c.state["account"] = *account;
  c.state.erase("registration");
  Status saved = SaveState(c);
  if (!saved.ok()) {
    return Fail(c, saved.error());
  }
  if (Json(c)) {
    PrintJson({{"accountId", *account}});
  } else {
    std::cout << "Confirmed: account " << *account << ". Next: opentoken login\n";
  }
  return kExitOk;
}

int Login(Context& c) {
  Result<std::string> account = NeedAccount(c);
  if (!account.ok()) {
    return Fail(c, account.error());
  }
  Result<Secret> password = Password(c, false);
  if (!password.ok()) {
    return Fail(c, password.error());
  }
  Secret totp;
  if (c.args.Has("--totp-key-file")) {
    Result<Secret> key_text = ReadSecretFile(c.args.Get("--totp-key-file"));
    if (!key_text.ok()) {
      return Fail(c, key_text.error());
    }
    const std::string& k = key_text->Reveal();
    const bool hex =
        k.size() % 2 == 0 && k.find_first_not_of("0123456789abcdefABCDEF") == std::string::npos;
    Result<std::string> key = hex ? HexDecode(k) : Base32Decode(k);
    if (!key.ok() || key->empty()) {
      return Fail(c, Usage("--totp-key-file: not a base32 or hex key"));
    }
    totp = Secret(Totp(*key, std::time(nullptr)));
    Wipe(*key);
  } else {
    Result<std::optional<Secret>> code =
        ReadSecret(c.args, {"totp", "OPENTOKEN_TOTP", "TOTP code: "}, c.env, true);
    if (!code.ok()) {
      return Fail(c, code.error());
    }
    if (!code->has_value()) {
      return Fail(c, Usage("no TOTP code: use --totp-file, --totp-fd, OPENTOKEN_TOTP, "
                           "--totp-key-file, or run on a terminal"));
    }
    totp = std::move(**code);
  }
  Client client = MakeClient(c);
  Status in = client.Login(*account, *password, totp.Reveal());
  if (!in.ok()) {
    return Fail(c, in.error());
  }
  json session = {{"cookie", client.cookie().Reveal()}, {"account", *account}};
  Status saved = WritePrivateFile(c.settings.paths.session, session.dump() + "\n");
  std::string& cookie = session["cookie"].get_ref<std::string&>();
  Wipe(cookie);
  if (!saved.ok()) {
    return Fail(c, saved.error());
  }
  if (c.state.value("account", "") != *account) {
    c.state["account"] = *account;
    Status st = SaveState(c);
    if (!st.ok()) {
      return Fail(c, st.error());
    }
  }
  if (Json(c)) {
    PrintJson({{"accountId", *account}, {"session", c.settings.paths.session}});
  } else {
    std::cout << "Logged in to account " << *account << " (session in " << c.settings.paths.session
              << ")\n";
  }
  return kExitOk;
}

int Logout(Context& c) {
  Client client = MakeClient(c);
  LoadSession(c, client);
  if (client.cookie().Empty()) {
    return Fail(c, Usage("not logged in"));
  }
  Result<std::string> account = NeedAccount(c);
  if (!account.ok()) {
    return Fail(c, account.error());
  }
  Status out = client.Logout(*account);
  ::unlink(c.settings.paths.session.c_str());  // gone locally whatever the server said
  if (!out.ok()) {
    return Fail(c, out.error());
  }
  if (Json(c)) {
    PrintJson({{"loggedOut", true}});
  } else {
    std::cout << "Logged out.\n";
  }
  return kExitOk;
}

// What the commands of a logged-in user need: the client authenticated (session or bearer) and
// the account it acts for.
Result<std::string> AuthenticatedAccount(Context& c, Client& client) {
  Status auth = Authenticate(c, client);
  if (!auth.ok()) {
    return auth.error();
  }
  return NeedAccount(c);
}

int Whoami(Context& c) {
  Client client = MakeClient(c);
  Result<std::string> account = AuthenticatedAccount(c, client);
  if (!account.ok()) {
    return Fail(c, account.error());
  }
  Result<json> doc = client.Account(*account);
  if (!doc.ok()) {
    return Fail(c, doc.error());
  }
  const std::string email = doc->value("email", "");
  if (Json(c)) {
    PrintJson({{"accountId", *account}, {"email", email}});
  } else {
    std::cout << email << " (account " << *account << ")\n";
  }
  return kExitOk;
}

int AccessCode(Context& c) {
  Client client = MakeClient(c);
  Result<std::string> account = AuthenticatedAccount(c, client);
  if (!account.ok()) {
    return Fail(c, account.error());
  }
  if (c.args.sub == "create") {
    Result<AccessCodePair> pair = client.CreateAccessCode(*account, c.args.Get("--description"));
    if (!pair.ok()) {
      return Fail(c, pair.error());
    }
    const bool save = c.args.Has("--save");
    if (save) {
      c.state["account"] = *account;
      c.state["access_code"] = pair->code;
      c.state["secret"] = pair->secret.Reveal();
      Status st = SaveState(c);
      std::string& s = c.state["secret"].get_ref<std::string&>();
      Wipe(s);
      if (!st.ok()) {
        return Fail(c, st.error());
      }
    }
    if (Json(c)) {
      json doc = {{"code", pair->code}};
      if (save) {
        doc["saved"] = c.settings.paths.state;
      } else {
        doc["secret"] = pair->secret.Reveal();
      }
      PrintJson(doc);
    } else if (save) {
      std::cout << "code:   " << pair->code << "\nsecret: saved in " << c.settings.paths.state
                << " (0600); tokenize/detokenize use it\n";
    } else {
      std::cout << "code:   " << pair->code << "\nsecret: " << pair->secret.Reveal()
                << "\n(the secret is shown once: keep it in a 0600 file and pass --secret-file)\n";
    }
    return kExitOk;
  }
  if (c.args.sub == "list") {
    Result<json> doc = client.ListAccessCodes(*account);
    if (!doc.ok()) {
      return Fail(c, doc.error());
    }
    if (Json(c)) {
      PrintJson(*doc);
      return kExitOk;
    }
    for (const json& item : doc->value("items", json::array())) {
      std::cout << item.value("code", "") << "  expires " << item.value("expires", "") << "  "
                << item.value("description", "") << "\n";
    }
    return kExitOk;
  }
  if (c.args.positional.size() != 1) {
    return Fail(c, Usage("usage: opentoken access-code revoke CODE"));
  }
  Status revoked = client.RevokeAccessCode(*account, c.args.positional[0]);
  if (!revoked.ok()) {
    return Fail(c, revoked.error());
  }
  if (c.state.value("access_code", "") == c.args.positional[0]) {
    c.state.erase("access_code");
    c.state.erase("secret");
    Status st = SaveState(c);
    if (!st.ok()) {
      return Fail(c, st.error());
    }
  }
  if (Json(c)) {
    PrintJson({{"revoked", c.args.positional[0]}});
  } else {
    std::cout << "Revoked " << c.args.positional[0] << "\n";
  }
  return kExitOk;
}

void PrintAccessToken(const json& t) {
  std::cout << t.value("id", "") << "  " << t.value("status", "") << "  expires "
            << t.value("expirationDate", "") << "  " << t.value("name", "");
  if (t.contains("scope") && t["scope"].is_array()) {
    std::cout << "  [";
    for (size_t i = 0; i < t["scope"].size(); ++i) {
      std::cout << (i ? " " : "") << t["scope"][i].get<std::string>();
    }
    std::cout << "]";
  }
  std::cout << "\n";
}

int AccessToken(Context& c) {
  Client client = MakeClient(c);
  const std::string& sub = c.args.sub;
  const bool email_flow = sub.rfind("email-", 0) == 0;
  if (!email_flow) {
    Status auth = Authenticate(c, client);
    if (!auth.ok()) {
      return Fail(c, auth.error());
    }
  }
  auto need_one = [&](const char* usage) -> Result<std::string> {
    if (c.args.positional.size() != 1) {
      return Usage(std::string("usage: opentoken access-token ") + usage);
    }
    return c.args.positional[0];
  };
  auto show = [&](const Result<json>& doc) {
    if (!doc.ok()) {
      return Fail(c, doc.error());
    }
    if (Json(c)) {
      PrintJson(*doc);
    } else if (doc->contains("items")) {
      for (const json& t : (*doc)["items"]) {
        PrintAccessToken(t);
      }
    } else {
      PrintAccessToken(*doc);
      if (doc->contains("token")) {
        std::cout << "token: " << (*doc)["token"].get<std::string>()
                  << "\n(shown once: send it as `Authorization: Bearer ...`)\n";
      }
    }
    return kExitOk;
  };
  if (sub == "create") {
    if (!c.args.Has("--name")) {
      return Fail(c, Usage("access-token create needs --name NAME"));
    }
    json body = {{"name", c.args.Get("--name")}};
    if (c.args.Has("--description")) {
      body["description"] = c.args.Get("--description");
    }
    if (c.args.Has("--scope")) {
      body["scope"] = c.args.All("--scope");
    }
    if (c.args.Has("--expires")) {
      body["expirationDate"] = c.args.Get("--expires");
    }
    if (c.args.Has("--status")) {
      body["status"] = c.args.Get("--status");
    }
    return show(client.CreateAccessToken(body));
  }
  if (sub == "list") {
    return show(client.ListAccessTokens());
  }
  if (sub == "get" || sub == "update" || sub == "delete") {
    Result<std::string> id = need_one((sub + " ID").c_str());
    if (!id.ok()) {
      return Fail(c, id.error());
    }
    if (sub == "get") {
      return show(client.GetAccessToken(*id));
    }
    if (sub == "update") {
      json body = json::object();
      if (c.args.Has("--name")) {
        body["name"] = c.args.Get("--name");
      }
      if (c.args.Has("--status")) {
        body["status"] = c.args.Get("--status");
      }
      return show(client.UpdateAccessToken(*id, body));
    }
    Status deleted = client.DeleteAccessToken(*id);
    if (!deleted.ok()) {
      return Fail(c, deleted.error());
    }
    if (Json(c)) {
      PrintJson({{"deleted", *id}});
    } else {
      std::cout << "Deleted " << *id << "\n";
    }
    return kExitOk;
  }
  Result<std::string> email = need_one((sub + " EMAIL").c_str());
  if (!email.ok()) {
    return Fail(c, email.error());
  }
  Status st = Ok();
  std::string done;
  if (sub == "email-request") {
    st = client.RequestEmailedToken(*email);
    done = "Requested: if " + *email + " has an account, a token is on its way by mail.";
  } else if (sub == "email-revoke-request") {
    st = client.RequestEmailedTokenDeletion(*email);
    done = "Requested: if " + *email + " has an account, a deletion code is on its way by mail.";
  } else {
    Result<std::optional<Secret>> code = ReadSecret(
        c.args, {"mail-code", "OPENTOKEN_MAIL_CODE", "Code from the mail: "}, c.env, true);
    if (!code.ok()) {
      return Fail(c, code.error());
    }
    if (!code->has_value()) {
      return Fail(c, Usage("no code: use --mail-code-file, --mail-code-fd or OPENTOKEN_MAIL_CODE"));
    }
    st = client.DeleteEmailedTokens(*email, **code);
    done = "Revoked the e-mailed tokens of " + *email + ".";
  }
  if (!st.ok()) {
    return Fail(c, st.error());
  }
  if (Json(c)) {
    PrintJson({{"ok", true}});
  } else {
    std::cout << done << "\n";
  }
  return kExitOk;
}

// A token id, or its whole href (/account/A/token/ID): the id.
std::string TokenId(const std::string& arg) {
  const size_t slash = arg.rfind('/');
  return slash == std::string::npos ? arg : arg.substr(slash + 1);
}

Result<std::string> ExpiresArgument(const std::string& v) {
  static const std::regex kDuration(R"(^([0-9]{1,9})([smhd])$)");
  std::smatch m;
  if (std::regex_match(v, m, kDuration)) {
    const long long n = std::stoll(m.str(1));
    const long long unit = m.str(2) == "s"   ? 1
                           : m.str(2) == "m" ? 60
                           : m.str(2) == "h" ? 3600
                                             : 86400;
    return Ot1Date(static_cast<std::time_t>(std::time(nullptr) + n * unit));
  }
  return v;  // the server checks yyyy-mm-ddThh:mm:ssZ
}

// What every token command needs: the account and the access code pair that signs for it.
struct SignedTarget {
  std::string account;
  AccessCodePair pair;
};

Result<SignedTarget> NeedSignedTarget(const Context& c) {
  Result<std::string> account = NeedAccount(c);
  if (!account.ok()) {
    return account.error();
  }
  Result<AccessCodePair> pair = Pair(c);
  if (!pair.ok()) {
    return pair.error();
  }
  return SignedTarget{std::move(*account), std::move(*pair)};
}

int Tokenize(Context& c) {
  if (!c.args.positional.empty()) {
    return Fail(c, Usage("tokenize reads the data from standard input (or --input FILE)"));
  }
  Result<SignedTarget> target = NeedSignedTarget(c);
  if (!target.ok()) {
    return Fail(c, target.error());
  }
  TokenOptions options;
  options.content_type = c.args.Get("--content-type", "application/octet-stream");
  options.is_public = c.args.Has("--public");
  if (c.args.Has("--expires")) {
    options.expires = *ExpiresArgument(c.args.Get("--expires"));
  }
  Result<std::string> data = c.args.Has("--input") ? ReadInputFile(c.args.Get("--input"))
                                                   : ReadAll(STDIN_FILENO, "standard input");
  if (!data.ok()) {
    return Fail(c, data.error());
  }
  Secret payload(std::move(*data));
  Client client = MakeClient(c);
  Result<std::string> id =
      client.Tokenize(target->account, target->pair, payload.Reveal(), options);
  if (!id.ok()) {
    return Fail(c, id.error());
  }
  if (Json(c)) {
    PrintJson({{"id", *id}, {"href", "/account/" + target->account + "/token/" + *id}});
  } else {
    std::cout << *id << "\n";
  }
  return kExitOk;
}

int Detokenize(Context& c) {
  if (c.args.positional.size() != 1) {
    return Fail(c, Usage("usage: opentoken detokenize ID > FILE"));
  }
  Result<SignedTarget> target = NeedSignedTarget(c);
  if (!target.ok()) {
    return Fail(c, target.error());
  }
  const std::string id = TokenId(c.args.positional[0]);
  Client client = MakeClient(c);
  Result<Detokenized> token = client.Detokenize(target->account, target->pair, id);
  if (!token.ok()) {
    return Fail(c, token.error());
  }
  if (Json(c)) {
    json doc = {{"id", id},
                {"contentType", token->content_type},
                {"dataBase64", Base64Encode(token->data.Reveal())}};
    PrintJson(doc);
    std::string& b64 = doc["dataBase64"].get_ref<std::string&>();
    Wipe(b64);
    return kExitOk;
  }
  int fd = STDOUT_FILENO;
  if (c.args.Has("--output")) {
    fd = ::open(c.args.Get("--output").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
      return Fail(c, Local(c.args.Get("--output") + ": " + std::strerror(errno)));
    }
  }
  Status written = WriteAll(fd, token->data.Reveal());
  if (fd != STDOUT_FILENO) {
    ::close(fd);
  }
  if (!written.ok()) {
    return Fail(c, written.error());
  }
  return kExitOk;
}

int Delete(Context& c) {
  if (c.args.positional.size() != 1) {
    return Fail(c, Usage("usage: opentoken delete ID"));
  }
  Result<SignedTarget> target = NeedSignedTarget(c);
  if (!target.ok()) {
    return Fail(c, target.error());
  }
  const std::string id = TokenId(c.args.positional[0]);
  Status st = MakeClient(c).DeleteToken(target->account, target->pair, id);
  if (!st.ok()) {
    return Fail(c, st.error());
  }
  if (Json(c)) {
    PrintJson({{"deleted", id}});
  } else {
    std::cout << "Deleted " << id << "\n";
  }
  return kExitOk;
}

// sign and request: METHOD PATH [--content-type T] [--data ...]
int SignOrRequest(Context& c) {
  if (c.args.positional.size() != 2) {
    return Fail(c, Usage("usage: opentoken " + c.args.command + " METHOD PATH [--data @FILE]"));
  }
  std::string method = c.args.positional[0];
  std::transform(method.begin(), method.end(), method.begin(), [](char ch) {
    return static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  });
  const std::string target = c.args.positional[1];
  if (target.empty() || target[0] != '/') {
    return Fail(c, Usage("PATH must start with / (e.g. /account/ID/token)"));
  }
  Result<AccessCodePair> pair = Pair(c);
  if (!pair.ok()) {
    return Fail(c, pair.error());
  }
  Result<std::string> data = DataArgument(c);
  if (!data.ok()) {
    return Fail(c, data.error());
  }
  Secret body(std::move(*data));
  const std::string content_type = c.args.Get("--content-type", "application/octet-stream");
  Client client = MakeClient(c);
  if (c.args.command == "sign") {
    Result<Headers> headers =
        Sign(method, target, {{"Host", client.HostHeader()}, {"Content-Type", content_type}},
             body.Reveal(), pair->code, pair->secret);
    if (!headers.ok()) {
      return Fail(c, headers.error());
    }
    if (Json(c)) {
      json doc = json::object();
      for (const auto& [name, value] : *headers) {
        doc[name] = value;
      }
      PrintJson({{"headers", doc}});
    } else {
      for (const auto& [name, value] : *headers) {
        std::cout << name << ": " << value << "\n";
      }
    }
    return kExitOk;
  }
  Result<Response> r = client.SendSigned(method, target, content_type, body.Reveal(), *pair);
  if (!r.ok()) {
    return Fail(c, r.error());
  }
  if (c.args.Has("--include")) {
    std::string head = "HTTP/1.1 " + std::to_string(r->status) + "\n";
    for (const auto& [name, value] : r->headers) {
      head += name + ": " + value + "\n";
    }
    head += "\n";
    Status st = WriteAll(STDOUT_FILENO, head);
    if (!st.ok()) {
      return Fail(c, st.error());
    }
  }
  Status st = WriteAll(STDOUT_FILENO, r->body);
  Wipe(r->body);
  if (!st.ok()) {
    return Fail(c, st.error());
  }
  if (r->status >= 300) {
    std::cerr << "opentoken request: HTTP " << r->status << "\n";
    return r->status >= 500 ? kExitTransport : kExitRefused;
  }
  return kExitOk;
}

int Run(const std::vector<std::string>& argv) {
  Context c;
  c.env = ProcessEnv();
  Result<Args> args = ParseArgs(argv);
  if (!args.ok()) {
    std::cerr << "opentoken: " << args.error().message << "\n";
    return kExitUsage;
  }
  c.args = std::move(*args);
  if (c.args.Has("--version")) {
    std::cout << "opentoken " << kVersion << " (libopentoken-client " << kVersion << ")\n";
    return kExitOk;
  }
  if (c.args.command == "help") {
    std::cout << UsageText(c.args.positional.empty() ? "" : c.args.positional[0]);
    return kExitOk;
  }
  if (c.args.Has("--help") || c.args.command.empty()) {
    std::cout << UsageText(c.args.command);
    return c.args.command.empty() && !c.args.Has("--help") ? kExitUsage : kExitOk;
  }
  // Settings: config file (user's) and state file (the CLI's) of the profile.
  Result<Paths> first = PathsFor("default", c.args.Get("--config"), c.env);
  if (!first.ok()) {
    return Fail(c, first.error());
  }
  Result<json> config = LoadJsonFile(first->config);
  if (!config.ok()) {
    return Fail(c, config.error());
  }
  Result<std::string> profile = ProfileName(c.args, c.env, *config);
  if (!profile.ok()) {
    return Fail(c, profile.error());
  }
  Result<Paths> paths = PathsFor(*profile, c.args.Get("--config"), c.env);
  if (!paths.ok()) {
    return Fail(c, paths.error());
  }
  Result<json> state = LoadJsonFile(paths->state);
  if (!state.ok()) {
    return Fail(c, state.error());
  }
  c.state = state->is_object() ? *state : json::object();
  Result<Settings> settings = Resolve(c.args, c.env, *config, c.state, *paths);
  if (state->is_object() && state->contains("secret")) {
    std::string& s = (*state)["secret"].get_ref<std::string&>();
    Wipe(s);
  }
  if (!settings.ok()) {
    return Fail(c, settings.error());
  }
  c.settings = std::move(*settings);
  if (c.args.command != "sign") {
    Status ep = NeedEndpoint(c);
    if (!ep.ok()) {
      return Fail(c, ep.error());
    }
  }
  const std::string& cmd = c.args.command;
  using Command = int (*)(Context&);
  static const std::map<std::string_view, Command> kCommands = {
      {"register", Register},
      {"confirm", Confirm},
      {"login", Login},
      {"logout", Logout},
      {"whoami", Whoami},
      {"access-code", AccessCode},
      {"access-token", AccessToken},
      {"tokenize", Tokenize},
      {"detokenize", Detokenize},
      {"delete", Delete},
      {"sign", SignOrRequest},
      {"request", SignOrRequest},
  };
  const auto command = kCommands.find(cmd);
  const int code = command == kCommands.end() ? kExitUsage : command->second(c);
  Wipe(c.settings.saved_secret);
  if (c.state.contains("secret")) {
    std::string& s = c.state["secret"].get_ref<std::string&>();
    Wipe(s);
  }
  return code;
}

}  // namespace
}  // namespace opentoken::cli

int main(int argc, char** argv) {
  try {
    std::vector<std::string> args(argv + 1, argv + argc);
    return opentoken::cli::Run(args);
  } catch (const std::exception& e) {  // a bug: the library and the CLI return errors as values
    std::cerr << "opentoken: unexpected exception: " << e.what() << "\n";
  } catch (...) {
    std::cerr << "opentoken: unexpected exception\n";
  }
  return opentoken::cli::kExitTransport;
}
