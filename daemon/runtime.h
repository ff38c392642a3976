#pragma once
// Composition shared by opentokend and opentoken-admin: PIN → token, store, vault.

#include <memory>

#include "common/clock.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/secret_bytes.h"
#include "daemon/config.h"
#include "hsm/hsm.h"
#include "mail/mail.h"
#include "service/accounts.h"
#include "service/vault.h"
#include "store/lmdb_store.h"
#include "store/pg_store.h"
#include "store/store.h"

namespace otd::daemon {

// Exit codes (DESIGN §5, sysexits.h).
inline constexpr int kExitOk = 0;
inline constexpr int kExitUsage = 64;
inline constexpr int kExitUnavailable = 69;
inline constexpr int kExitSoftware = 70;
inline constexpr int kExitConfig = 78;

// Reads the PIN from hsm.pin_file, or from the systemd credential `pin`
// ($CREDENTIALS_DIRECTORY/pin). Trailing newlines are removed. kInvalidArgument (a config problem)
// when missing, empty, or readable by others.
Result<SecretBytes> ReadPin(const Config& config);

// The PostgreSQL store options the config describes; the password from
// storage.postgresql.password_file, else the systemd credential `pgpassword` when present, else
// none. kInvalidArgument for an unreadable or group/other-readable password file.
Result<store::PgOptions> PgOptionsFrom(const Config& config);

struct Runtime {
  SystemClock clock;
  std::unique_ptr<hsm::Token> token;
  std::unique_ptr<store::Store> store;
  store::LmdbStore* lmdb = nullptr;  // the same store when it is the embedded LMDB (backups)
  std::unique_ptr<service::Vault> vault;
};

// Opens token and store (storage.backend: LMDB, or PostgreSQL whose schema must exist). Config-type
// problems come back as kInvalidArgument, everything else (module missing, token absent, wrong PIN,
// store unusable) as kUnavailable/kPermissionDenied. With `metrics`, the token and the store are
// measured into it (it must outlive the runtime).
Result<std::unique_ptr<Runtime>> OpenRuntime(const Config& config, Logger& log,
                                             metrics::Registry* metrics = nullptr);

// The mail options and account options the config describes.
mail::MailOptions MailOptionsFrom(const Config& config);
service::AccountsOptions AccountsOptionsFrom(const Config& config);
// public_url, or the TLS listener's URL, or http://localhost.
std::string PublicUrl(const Config& config);

// Maps a start-up failure to an exit code (78 for configuration, 69 otherwise).
int ExitCodeFor(const Status& s);

}  // namespace otd::daemon
