#pragma once
// Test environment for service tests: a fresh SoftHSM2 token, an LMDB store on disk, a spool
// mailer and a fake clock, with the vault keys initialised. Real parts only; time is the fake.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/log.h"
#include "common/metrics.h"
#include "mail/mail.h"
#include "service/vault.h"
#include "store/lmdb_store.h"
#include "tests/support/temp_token.h"

namespace otd::service {

class ServiceEnv {
 public:
  explicit ServiceEnv(bool init_keys = true) {
    Open();
    if (init_keys) {
      EXPECT_TRUE(vault_->keys().InitKeys().ok());
    }
    mail::MailOptions mo;
    mo.spool_dir = data_.path() + "/mail";
    auto mailer = mail::SpoolMailer::Create(mo, log_);
    EXPECT_TRUE(mailer.ok());
    mailer_ = std::move(mailer).value();
  }

  // Opens the token, the store (data_/data) and the vault; Close() releases them (restart tests).
  // `metrics` (optional) measures the token's operations; it must outlive the token (Close()).
  void Open(metrics::Registry* metrics = nullptr) {
    hsm::TokenConfig config = token_dir_.Config();
    config.metrics = metrics;
    auto token = hsm::Token::Open(std::move(config), &log_);
    ASSERT_TRUE(token.ok()) << token.status().ToString();
    token_ = std::move(token).value();
    store::LmdbOptions o;
    o.path = data_.path() + "/data";
    o.map_size_bytes = 64ull << 20;
    o.tables = AllTables();
    auto st = store::LmdbStore::Open(o, &log_);
    ASSERT_TRUE(st.ok()) << st.status().ToString();
    store_ = std::move(st).value();
    vault_ = std::make_unique<Vault>(*token_, *store_, log_);
  }
  void Close() {
    vault_.reset();
    store_.reset();
    token_.reset();
  }

  // Bodies of the mails in the spool, oldest first.
  std::vector<std::string> Mails() const {
    std::vector<std::filesystem::path> files;
    for (const auto& f : std::filesystem::directory_iterator(data_.path() + "/mail")) {
      if (f.path().extension() == ".eml") {
        files.push_back(f.path());
      }
    }
    std::sort(files.begin(), files.end());
    std::vector<std::string> out;
    for (const auto& p : files) {
      std::ifstream in(p, std::ios::binary);
      out.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    return out;
  }

  std::ostringstream log_sink_;
  Logger log_{log_sink_};
  FakeClock clock_{1'800'000'000};
  testing::TempToken token_dir_;
  testing::TempDir data_;
  std::unique_ptr<hsm::Token> token_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<Vault> vault_;
  std::unique_ptr<mail::SpoolMailer> mailer_;
};

}  // namespace otd::service
