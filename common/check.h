#pragma once
// OTD_CHECK(cond): an invariant that must hold whatever the input (house style rule 4). Always
// on, also in Release builds: when it fails, one JSON line naming the file, line and condition
// goes to stderr (never a value) and the process aborts — a broken invariant must not turn into
// a quiet 500 or a silently wrong answer. Core dumps are off in the daemon (daemon/hardening.h),
// so the abort leaves no copy of memory behind.
//
// Not for anything that came over a socket, from disk or from the HSM: those are errors
// (Status), not invariants.

namespace otd::internal {
[[noreturn]] void CheckFailed(const char* condition, const char* file, int line) noexcept;
}  // namespace otd::internal

#define OTD_CHECK(cond)                                        \
  do {                                                         \
    if (!(cond)) [[unlikely]] {                                \
      ::otd::internal::CheckFailed(#cond, __FILE__, __LINE__); \
    }                                                          \
  } while (false)
