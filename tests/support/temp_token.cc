#include "tests/support/temp_token.h"

#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace otd::testing {

namespace {
constexpr const char* kPin = "123456";
constexpr const char* kSoPin = "12345678";
}  // namespace

std::string TempToken::ModulePath() {
  const char* m = std::getenv("OTD_PKCS11_MODULE");
  return m != nullptr ? m : "/usr/lib/softhsm/libsofthsm2.so";
}

TempToken::TempToken(std::string label) : label_(std::move(label)) {
  std::string tokens = dir_.path() + "/tokens";
  std::filesystem::create_directories(tokens);
  std::string conf = dir_.path() + "/softhsm2.conf";
  std::ofstream(conf)
      << "directories.tokendir = " << tokens
      << "\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n";
  ::setenv("SOFTHSM2_CONF", conf.c_str(), 1);
  std::string cmd = "softhsm2-util --init-token --free --label '" + label_ + "' --so-pin " +
                    kSoPin + " --pin " + kPin + " >/dev/null";
  if (std::system(cmd.c_str()) != 0) {
    throw std::runtime_error("softhsm2-util --init-token failed");
  }
}

hsm::TokenConfig TempToken::Config(size_t max_sessions) const {
  hsm::TokenConfig c;
  c.module_path = ModulePath();
  c.token_label = label_;
  c.pin = SecretBytes::CopyFrom(std::string_view(kPin));
  c.max_sessions = max_sessions;
  return c;
}

}  // namespace otd::testing
