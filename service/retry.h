#pragma once
// Optimistic concurrency for read-modify-write updates: an attempt reads what it needs, builds a
// batch whose mutations carry the values read as preconditions (`expect`, kInsert, kUpdate), and
// commits it. When another writer got there first the store refuses the batch
// (kFailedPrecondition / kAlreadyExists) and the attempt runs again on fresh data.
//
//   return RetryOnConflict<Result<Info>>("this account's tokens", [&]() -> Attempt<Result<Info>> {
//     OTD_ASSIGN_OR_RETURN(Collection c, Load(account));   // an error ends the retries
//     ...
//     Status s = store_.Apply(std::move(batch));
//     if (IsLostRace(s)) {
//       return kRetry;
//     }
//     if (!s.ok()) {
//       return s;
//     }
//     return info;
//   });
//
// An attempt returns its final result, or kRetry when it lost a race. Errors that merely share a
// code with a lost race (a limit answered as kFailedPrecondition) are final: only a commit's
// outcome goes through LostRace.

#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace otd::service {

// Attempts per update before giving up with kUnavailable ("too much contention on ...").
inline constexpr int kMaxCommitAttempts = 16;

// nullopt: the attempt lost a race and runs again.
template <class R>
using Attempt = std::optional<R>;
inline constexpr std::nullopt_t kRetry = std::nullopt;

// True when a commit was refused because what the attempt read has changed meanwhile.
inline bool IsLostRace(const Status& s) {
  return s.code() == Code::kFailedPrecondition || s.code() == Code::kAlreadyExists;
}

template <class R, class Fn>
R RetryOnConflict(std::string_view what, Fn&& attempt) {
  for (int i = 0; i < kMaxCommitAttempts; ++i) {
    Attempt<R> r = attempt();
    if (r.has_value()) {
      return std::move(*r);
    }
  }
  return Unavailable("too much contention on " + std::string(what));
}

}  // namespace otd::service
