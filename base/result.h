// Result<T>: a value or an error message, for every host-side path that can
// fail at run time (no exceptions on the vCPU and device paths).
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <variant>

namespace ember {

struct Error {
  std::string message;
};

// "what failed: strerror(errno)", captured at the call site.
inline Error errno_error(const std::string& what, int err = errno) {
  return Error{what + ": " + std::strerror(err)};
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const { return std::get<1>(v_); }
  const std::string& message() const { return error().message; }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }
  const std::string& message() const { return error_.message; }

 private:
  Error error_;
  bool ok_ = true;
};

inline Result<void> Ok() { return {}; }

}  // namespace ember

// Propagates an error: EMBER_TRY(auto x, make_x()); or EMBER_TRY_VOID(do_y());
#define EMBER_CONCAT_(a, b) a##b
#define EMBER_CONCAT(a, b) EMBER_CONCAT_(a, b)
#define EMBER_TRY(decl, expr)                                   \
  auto EMBER_CONCAT(ember_r_, __LINE__) = (expr);               \
  if (!EMBER_CONCAT(ember_r_, __LINE__)) return EMBER_CONCAT(ember_r_, __LINE__).error(); \
  decl = std::move(EMBER_CONCAT(ember_r_, __LINE__)).value()
#define EMBER_TRY_VOID(expr)                                    \
  do {                                                          \
    auto ember_rv_ = (expr);                                    \
    if (!ember_rv_) return ember_rv_.error();                   \
  } while (0)
