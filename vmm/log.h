// Log: the VMM's diagnostics on stderr, prefixed "ember-vmm: ". Debug lines
// appear only in verbose mode (--verbose / EMBER_TRACE=1); errors always.
// Passed by pointer to whoever needs it (no global logger).
#pragma once

#include <cstdarg>
#include <cstdio>

namespace ember {

class Log {
 public:
  explicit Log(bool verbose = false) : verbose_(verbose) {}
  bool verbose() const { return verbose_; }

  __attribute__((format(printf, 2, 3))) void debug(const char* fmt, ...) const {
    if (!verbose_) return;
    va_list ap;
    va_start(ap, fmt);
    vprint(fmt, ap);
    va_end(ap);
  }
  __attribute__((format(printf, 2, 3))) void error(const char* fmt, ...) const {
    va_list ap;
    va_start(ap, fmt);
    vprint(fmt, ap);
    va_end(ap);
  }

 private:
  static void vprint(const char* fmt, va_list ap) {
    // One write per line so that lines from two threads do not interleave.
    char buf[1024];
    const int n = std::snprintf(buf, sizeof buf, "ember-vmm: ");
    const int m = std::vsnprintf(buf + n, sizeof buf - n, fmt, ap);
    size_t len = static_cast<size_t>(n) + static_cast<size_t>(m < 0 ? 0 : m);
    if (len > sizeof buf - 2) len = sizeof buf - 2;  // truncated; keep room for the newline
    buf[len++] = '\n';
    std::fwrite(buf, 1, len, stderr);
    std::fflush(stderr);
  }

  bool verbose_;
};

}  // namespace ember
