#pragma once
// Errors as values. Every fallible function returns Status or Result<T>; no exception crosses a
// module boundary. Messages are for operators: they never contain secret bytes, token ids,
// request bodies or e-mail addresses.

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace otd {

enum class Code {
  kOk = 0,
  kInvalidArgument,     // bad input from a caller (HTTP 400)
  kUnauthenticated,     // missing or wrong credentials (401)
  kPermissionDenied,    // authenticated but not allowed (403)
  kNotFound,            // 404
  kAlreadyExists,       // 409
  kFailedPrecondition,  // state does not allow the operation (409/412)
  kResourceExhausted,   // limits, rate limits, map full (413/429/503/507)
  kUnavailable,         // HSM or store not usable right now (503); may recover
  kDataLoss,            // a record does not authenticate or decode (treated as not found by APIs)
  kInternal,            // a broken invariant (500, no detail)
};

const char* CodeName(Code c);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code c, std::string msg) : code_(c), msg_(std::move(msg)) {}
  static Status Ok() { return {}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return msg_; }
  std::string ToString() const;

 private:
  Code code_ = Code::kOk;
  std::string msg_;
};

inline Status InvalidArgument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
inline Status Unauthenticated(std::string m) { return {Code::kUnauthenticated, std::move(m)}; }
inline Status PermissionDenied(std::string m) { return {Code::kPermissionDenied, std::move(m)}; }
inline Status NotFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
inline Status AlreadyExists(std::string m) { return {Code::kAlreadyExists, std::move(m)}; }
inline Status FailedPrecondition(std::string m) {
  return {Code::kFailedPrecondition, std::move(m)};
}
inline Status ResourceExhausted(std::string m) { return {Code::kResourceExhausted, std::move(m)}; }
inline Status Unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
inline Status DataLoss(std::string m) { return {Code::kDataLoss, std::move(m)}; }
inline Status Internal(std::string m) { return {Code::kInternal, std::move(m)}; }

// Holds either a T or a non-ok Status.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T v) : v_(std::in_place_index<0>, std::move(v)) {}      // NOLINT: implicit by design
  Result(Status s) : v_(std::in_place_index<1>, std::move(s)) {  // NOLINT
    assert(!std::get<1>(v_).ok() && "Result built from an ok Status");
    if (std::get<1>(v_).ok()) {
      v_.template emplace<1>(Code::kInternal, "Result built from an ok Status");
    }
  }

  bool ok() const { return v_.index() == 0; }
  Status status() const { return ok() ? Status::Ok() : std::get<1>(v_); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace otd

#define OTD_CONCAT_INNER_(a, b) a##b
#define OTD_CONCAT_(a, b) OTD_CONCAT_INNER_(a, b)

#define OTD_RETURN_IF_ERROR(expr)                      \
  do {                                                 \
    if (::otd::Status otd_s_ = (expr); !otd_s_.ok()) { \
      return otd_s_;                                   \
    }                                                  \
  } while (0)

// `tmp` is a name and `lhs` a declaration or an lvalue: neither can be parenthesised.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define OTD_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) {                                 \
    return tmp.status();                           \
  }                                                \
  lhs = std::move(tmp).value()
// NOLINTEND(bugprone-macro-parentheses)

// OTD_ASSIGN_OR_RETURN(auto x, Foo());
#define OTD_ASSIGN_OR_RETURN(lhs, expr) \
  OTD_ASSIGN_OR_RETURN_IMPL_(OTD_CONCAT_(otd_r_, __LINE__), lhs, expr)
