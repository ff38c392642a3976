#pragma once
// Every store table the service layer uses, in one place: the store is opened with AllTables(),
// and the services name their tables with these constants (never a string of their own). Every
// key is a keyed hash and every value a sealed record or a wrapped key (DESIGN §4); what each
// table holds is described by the service that owns it.

#include <array>
#include <string>
#include <string_view>
#include <vector>

namespace otd::service::tables {

inline constexpr std::string_view kMeta = "meta";                 // Vault: key versions, identity
inline constexpr std::string_view kAccountKeys = "account_keys";  // Vault: wrapped data keys
inline constexpr std::string_view kKeyUsage = "key_usage";        // Vault: GCM nonce budgets
inline constexpr std::string_view kRecords = "records";           // reserved (tests seal into it)
inline constexpr std::string_view kRegistrations = "registrations";            // Accounts
inline constexpr std::string_view kAccounts = "accounts";                      // Accounts
inline constexpr std::string_view kAccountEmails = "account_emails";           // e-mail index
inline constexpr std::string_view kSessions = "sessions";                      // Accounts
inline constexpr std::string_view kChallenges = "challenges";                  // Accounts
inline constexpr std::string_view kAccessCodes = "access_codes";               // AccessCodes
inline constexpr std::string_view kAccessCodeIndex = "access_code_index";      // AccessCodes
inline constexpr std::string_view kTokens = "tokens";                          // Tokens
inline constexpr std::string_view kAccessTokens = "access_tokens";             // AccessTokens
inline constexpr std::string_view kAccessTokenLookup = "access_token_lookup";  // AccessTokens
inline constexpr std::string_view kMailTokens = "mail_tokens";      // AccessTokens: deletion codes
inline constexpr std::string_view kMailRequests = "mail_requests";  // MailRequestQueue
// AuditLog: each node's audit chain head, key = node id, value = {"node","seq","hash"} JSON (not
// sealed: a seq and a MAC that are in the node's audit file anyway; not secret).
inline constexpr std::string_view kAuditHeads = "audit_heads";
inline constexpr std::string_view kMailOutbox = "mail_outbox";  // StoreMailOutbox (SMTP)
// SharedLimits: login/registration/e-mail limiter counts of daemons sharing one database (values
// are counts and times, not sealed: service/shared_limits.h). Empty on LMDB.
inline constexpr std::string_view kLimits = "limits";

inline constexpr std::array kAll = {
    kMeta,          kAccountKeys,  kRecords,           kRegistrations, kAccounts,
    kAccountEmails, kSessions,     kChallenges,        kAccessCodes,   kAccessCodeIndex,
    kTokens,        kAccessTokens, kAccessTokenLookup, kMailTokens,    kMailRequests,
    kKeyUsage,      kAuditHeads,   kMailOutbox,        kLimits};

}  // namespace otd::service::tables

namespace otd::service {

// Every table, for store::LmdbOptions::tables (and the PostgreSQL schema).
inline std::vector<std::string> AllTables() { return {tables::kAll.begin(), tables::kAll.end()}; }

}  // namespace otd::service
