#include "controller/log.h"

#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>

namespace ember::controller {

Result<LogLevel> parse_log_level(const std::string& s) {
  if (s == "debug") return LogLevel::kDebug;
  if (s == "info") return LogLevel::kInfo;
  if (s == "warn" || s == "warning") return LogLevel::kWarn;
  if (s == "error") return LogLevel::kError;
  return Error{"log level '" + s + "': expected debug, info, warn or error"};
}

const char* log_level_name(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
  }
  return "?";
}

#define EMBER_LOG_FN(name, lvl)                  \
  void Logger::name(const char* fmt, ...) const { \
    if (!enabled(lvl)) return;                   \
    va_list ap;                                  \
    va_start(ap, fmt);                           \
    vlog(lvl, fmt, ap);                          \
    va_end(ap);                                  \
  }
EMBER_LOG_FN(debug, LogLevel::kDebug)
EMBER_LOG_FN(info, LogLevel::kInfo)
EMBER_LOG_FN(warn, LogLevel::kWarn)
EMBER_LOG_FN(error, LogLevel::kError)
#undef EMBER_LOG_FN

void Logger::vlog(LogLevel l, const char* fmt, va_list ap) const {
  // One write() per line so that lines from many threads never interleave.
  char buf[2048];
  struct timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  ::gmtime_r(&ts.tv_sec, &tm);
  int n = std::snprintf(buf, sizeof buf, "%s: %04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s: ", prefix_.c_str(),
                        tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                        ts.tv_nsec / 1000000, log_level_name(l));
  if (n < 0) n = 0;
  const int m = std::vsnprintf(buf + n, sizeof buf - static_cast<size_t>(n), fmt, ap);
  size_t len = static_cast<size_t>(n) + static_cast<size_t>(m < 0 ? 0 : m);
  if (len > sizeof buf - 2) len = sizeof buf - 2;
  buf[len++] = '\n';
  ssize_t r = ::write(2, buf, len);
  (void)r;
}

}  // namespace ember::controller
