// What the parts of Controller (controller*.cc, one file per seam: start-up
// and reading, VM launching, pools and admission, deploy, invoke) share:
// small helpers for texts and times.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "base/clock.h"
#include "controller/fsutil.h"

namespace ember::controller::detail {

inline const std::vector<std::string> kChildEnv = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"};

inline uint64_t us_since(Clock::time_point t0) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count());
}

inline double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The last line of `text` that starts with `prefix` (or the last line).
inline std::string last_line(const std::string& text, const std::string& prefix = "") {
  std::string best;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    if (!line.empty() && (prefix.empty() || line.compare(0, prefix.size(), prefix) == 0)) best = line;
    start = end + 1;
  }
  return best;
}

inline std::string tail_of_file(const std::string& path, size_t max = 4096) {
  auto r = read_file(path, 64 << 20);
  if (!r) return "";
  const std::string& s = *r;
  return s.size() > max ? s.substr(s.size() - max) : s;
}

// ": " and the line that says why a VMM could not start (ember-jailer's, if
// it spoke), or "".
inline std::string last_words(const std::string& output) {
  std::string line = last_line(output, "ember-jailer: ");
  if (line.empty()) line = last_line(output);
  return line.empty() ? "" : ": " + line;
}

}  // namespace ember::controller::detail
