#pragma once
// libopentoken-client: a small C++20 client for opentokend (and the OpenToken API it serves).
//
// * Transports: the daemon's Unix socket, or https://HOST[:PORT] with a CA file (the peer's
//   certificate and host name/IP are verified). One connection per request, with a deadline
//   (Endpoint::timeout_seconds) for the whole exchange.
// * OT1 signed requests (OpenToken doc/api/signed-requests.md): Sign() returns the headers to
//   send; the canonical string is exactly the documented one (tested against its hex dump).
// * Account helpers: PBKDF2-SHA512 password hash with the parameters the server announces,
//   RFC 6238 TOTP, the login challenge hash; register/secure/confirm/login/logout/whoami.
// * Access codes, tokenize/detokenize/delete, access tokens (/access-tokens) and the e-mail
//   flow (/v1/access_tokens).
//
// Errors are values: every call returns Result<T>, holding either the value or an Error with the
// HTTP status and the server's message (vnd.error, {"type","message"} and {"data":{...}} shapes
// are all understood). No exceptions leave the library.
//
// Secrets (passwords, access-code secrets, TOTP keys, cookies, bearer tokens, payloads) are held
// in Secret, which wipes its bytes (OPENSSL_cleanse) when destroyed. The library never logs.
//
// Thread safety: a Client may be used from one thread at a time; distinct Clients are
// independent. Depends on OpenSSL 3, Boost.Asio/Beast (header-only) and nlohmann-json only.

#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace opentoken {

inline constexpr std::string_view kVersion = "0.1.0";

// A string that is wiped when destroyed or moved from. Move-only.
class Secret {
 public:
  Secret() = default;
  explicit Secret(std::string value) : value_(std::move(value)) {}
  Secret(Secret&& o) noexcept;
  Secret& operator=(Secret&& o) noexcept;
  Secret(const Secret&) = delete;
  Secret& operator=(const Secret&) = delete;
  ~Secret();
  const std::string& Reveal() const { return value_; }
  bool Empty() const { return value_.empty(); }

 private:
  std::string value_;
};

// Wipes a std::string's bytes (for temporaries that held secrets).
void Wipe(std::string& s);

struct Error {
  enum class Kind {
    kUsage,      // the caller's input is wrong (bad URL, bad id ...)
    kLocal,      // a local failure (file, terminal)
    kTransport,  // connect, TLS, I/O, or a reply that is not what the API documents
    kHttp,       // the server answered with an error status (see status)
  };
  Kind kind = Kind::kTransport;
  int status = 0;       // HTTP status for kHttp
  std::string message;  // readable; never holds a secret
  std::string code;     // the server's error code/type when it gave one
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Error e) : v_(std::move(e)) {}      // NOLINT(google-explicit-constructor)
  bool ok() const { return v_.index() == 0; }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  const Error& error() const { return std::get<1>(v_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }

 private:
  std::variant<T, Error> v_;
};
using Status = Result<std::monostate>;
inline Status Ok() { return Status(std::monostate{}); }

using Header = std::pair<std::string, std::string>;
using Headers = std::vector<Header>;

// Where the daemon is: exactly one of socket_path and url.
struct Endpoint {
  std::string socket_path;   // e.g. var/run/opentokend.sock
  std::string url;           // https://127.0.0.1:8443 (no path)
  std::string cacert;        // PEM file to trust for url; empty: the system's CAs
  int timeout_seconds = 60;  // the whole exchange (connect, TLS, request, reply)
};

struct Request {
  std::string method;  // upper case
  std::string target;  // origin form: /path?query
  Headers headers;     // Host is added by the transport when absent
  std::string body;
};

struct Response {
  int status = 0;
  Headers headers;
  std::string body;
  // First value of a header (case-insensitive name); "" when absent.
  std::string Get(std::string_view name) const;
  // Every Link header value, split into single links.
  std::vector<std::string> Links() const;
  // The href of the first link with this rel (and title when non-empty); "" when none.
  std::string FindLink(std::string_view rel, std::string_view title = {}) const;
};

// Turns a non-2xx response into an Error with the server's message (any of the three shapes).
Error HttpError(const Response& r);

// ---- primitives (pure, no I/O) -----------------------------------------------------------------
std::string HexEncode(std::string_view bytes);
Result<std::string> HexDecode(std::string_view hex);
std::string Base64Encode(std::string_view bytes);
Result<std::string> Base32Decode(std::string_view text);  // RFC 4648, padding/spaces optional
std::string HmacSha256Hex(std::string_view key, std::string_view data);
// PBKDF2-SHA512 as passwordHashConfig describes it ({"type":"pbkdf2","algorithm":"sha512",
// "encoding":"base64","iterations","derivedLength","salt"}): base64 of the derived bytes.
Result<Secret> PasswordHash(const nlohmann::json& config, const Secret& password);
// hex(SHA-512(password_hash + salt)) as challengeHashConfig describes it (sha512, hex).
Result<Secret> ChallengeHash(const Secret& password_hash, const nlohmann::json& config);
// RFC 6238 TOTP with HMAC-SHA1, 30 s steps, 6 digits: the code of step floor(t/30)+offset.
std::string Totp(std::string_view key, std::int64_t unix_time, int step_offset = 0);

// The confirmation path (/registration/ID/confirm/CODE) in a confirmation mail as the daemon
// writes it (RFC 5322, quoted-printable body); "" when there is none.
std::string FindConfirmationPath(std::string_view mail);

// ---- OT1 signed requests -----------------------------------------------------------------------
inline constexpr std::string_view kOt1Scheme = "OT1-HMAC-SHA256-HEX";
// yyyy-mm-ddThh:mm:ssZ (second precision: what every server version accepts).
std::string Ot1Date(std::time_t t);
// METHOD\nPATH\nQUERY\n(name:value\n)*\nBODY for the signed header names (lower case, in order).
// Fails when a signed header is missing from headers.
Result<std::string> CanonicalString(std::string_view method, std::string_view target,
                                    const Headers& headers,
                                    const std::vector<std::string>& signed_names,
                                    std::string_view body);
// The headers to send: `headers` (which must hold Host and Content-Type) plus X-OpenToken-Date
// (date, or now when empty) and Authorization, signing host, content-type, x-opentoken-date.
Result<Headers> Sign(std::string_view method, std::string_view target, const Headers& headers,
                     std::string_view body, std::string_view access_code, const Secret& secret,
                     std::string_view date = {});

// ---- the client --------------------------------------------------------------------------------
struct AccessCodePair {
  std::string code;
  Secret secret;
};

struct Registration {
  std::string href;  // /registration/ID
  std::string key_base32, key_hex, key_uri;
  nlohmann::json password_hash_config;
};

struct Detokenized {
  Secret data;  // the exact bytes
  std::string content_type;
};

struct TokenOptions {
  std::string content_type = "application/octet-stream";
  bool is_public = false;
  std::string expires;  // yyyy-mm-ddThh:mm:ssZ, empty: none
};

class Client {
 public:
  explicit Client(Endpoint endpoint);
  const Endpoint& endpoint() const { return endpoint_; }
  // "localhost" on the Unix socket, HOST[:PORT] as in the URL over TLS (what OT1 signs).
  std::string HostHeader() const;

  void SetCookie(Secret cookie) { cookie_ = std::move(cookie); }
  const Secret& cookie() const { return cookie_; }
  void SetBearer(Secret token) { bearer_ = std::move(token); }

  // One request as given (Host added when absent; the cookie or bearer when `authenticate`).
  Result<Response> Send(Request request, bool authenticate = true) const;
  // Same, OT1-signed with the pair; content_type is sent and signed (GETs too).
  Result<Response> SendSigned(std::string method, std::string target, std::string content_type,
                              std::string body, const AccessCodePair& pair) const;

  // Account. Register posts the e-mail address and returns the TOTP key and hash parameters;
  // Secure sets the password and proves the TOTP key (codes computed from the key at `now`);
  // the server then mails the confirmation link. Confirm takes the link, its path or
  // (registration href + code) and returns the account id.
  Result<Registration> Register(std::string_view email) const;
  Status Secure(const Registration& reg, const Secret& password, std::int64_t now) const;
  static Result<std::string> ConfirmPath(std::string_view link_or_code,
                                         std::string_view registration_href);
  Result<std::string> Confirm(std::string_view confirm_path) const;
  // Logs in (stores the session cookie in this client, see cookie()).
  Status Login(std::string_view account, const Secret& password, std::string_view totp_code);
  Status Logout(std::string_view account) const;
  Result<nlohmann::json> Account(std::string_view account) const;

  // Access code pairs (cookie or bearer).
  Result<AccessCodePair> CreateAccessCode(std::string_view account,
                                          std::string_view description) const;
  Result<nlohmann::json> ListAccessCodes(std::string_view account) const;
  Status RevokeAccessCode(std::string_view account, std::string_view code) const;

  // Tokens (OT1-signed). Tokenize returns the token id.
  Result<std::string> Tokenize(std::string_view account, const AccessCodePair& pair,
                               std::string_view data, const TokenOptions& options) const;
  Result<Detokenized> Detokenize(std::string_view account, const AccessCodePair& pair,
                                 std::string_view token_id) const;
  Status DeleteToken(std::string_view account, const AccessCodePair& pair,
                     std::string_view token_id) const;

  // Access tokens (/access-tokens; cookie or bearer). Create's reply holds the token string.
  Result<nlohmann::json> CreateAccessToken(const nlohmann::json& body) const;
  Result<nlohmann::json> ListAccessTokens() const;
  Result<nlohmann::json> GetAccessToken(std::string_view id) const;
  Result<nlohmann::json> UpdateAccessToken(std::string_view id, const nlohmann::json& body) const;
  Status DeleteAccessToken(std::string_view id) const;
  // The e-mail flow (/v1/access_tokens; no credentials).
  Status RequestEmailedToken(std::string_view email) const;
  Status RequestEmailedTokenDeletion(std::string_view email) const;
  Status DeleteEmailedTokens(std::string_view email, const Secret& code) const;

 private:
  Result<nlohmann::json> JsonCall(std::string method, std::string target,
                                  const nlohmann::json* body, int want_status,
                                  bool authenticate = true) const;
  Endpoint endpoint_;
  Secret cookie_;
  Secret bearer_;
};

}  // namespace opentoken
