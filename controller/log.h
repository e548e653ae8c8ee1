// Logger: emberd's diagnostics on stderr, one line each, with a level filter:
// "emberd: 2026-11-25T12:00:00.123Z info: message". Passed by reference to
// whoever needs it (no global logger).
#pragma once

#include <atomic>
#include <cstdarg>
#include <string>

#include "base/result.h"

namespace ember::controller {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// "debug", "info", "warn" (or "warning"), "error".
Result<LogLevel> parse_log_level(const std::string& s);
const char* log_level_name(LogLevel l);

class Logger {
 public:
  explicit Logger(LogLevel level = LogLevel::kInfo, std::string prefix = "emberd") : level_(level), prefix_(std::move(prefix)) {}
  LogLevel level() const { return level_.load(); }
  bool enabled(LogLevel l) const { return l >= level_.load(); }

  __attribute__((format(printf, 2, 3))) void debug(const char* fmt, ...) const;
  __attribute__((format(printf, 2, 3))) void info(const char* fmt, ...) const;
  __attribute__((format(printf, 2, 3))) void warn(const char* fmt, ...) const;
  __attribute__((format(printf, 2, 3))) void error(const char* fmt, ...) const;

 private:
  void vlog(LogLevel l, const char* fmt, va_list ap) const;
  std::atomic<LogLevel> level_;
  std::string prefix_;
};

}  // namespace ember::controller
