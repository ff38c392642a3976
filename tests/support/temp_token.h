#pragma once
// Test support: a fresh SoftHSM2 token in a temp directory (own softhsm2.conf, SOFTHSM2_CONF set
// for this process), and a temp directory helper. Used by the service tests; the daemon tests in
// tests/integration create theirs with softhsm2-util the same way.

#include <string>

#include "hsm/hsm.h"
#include "tests/support/temp_dir.h"

namespace otd::testing {

class TempToken {
 public:
  explicit TempToken(std::string label = "otd-test");
  const std::string& dir() const { return dir_.path(); }
  std::string label() const { return label_; }
  // A TokenConfig for this token with the right PIN.
  hsm::TokenConfig Config(size_t max_sessions = 4) const;
  static std::string ModulePath();

 private:
  TempDir dir_;
  std::string label_;
};

}  // namespace otd::testing
