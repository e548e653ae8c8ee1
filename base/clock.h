// The one monotonic clock of the host side: std::chrono's steady clock for
// deadlines, and its nanoseconds as a plain number where a value goes into
// plain data (traces, device state, control-page timestamps).
#pragma once

#include <time.h>

#include <chrono>
#include <cstdint>

namespace ember {

using Clock = std::chrono::steady_clock;

// CLOCK_MONOTONIC in nanoseconds (the clock Clock reads on Linux).
inline uint64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// Milliseconds until `deadline` for poll(2): 0 once it passed, rounded up
// otherwise (poll never wakes before it), at most 1,000,000.
inline int poll_ms_left(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  if (left <= 0) return 0;
  return left > 1000000 ? 1000000 : static_cast<int>(left) + 1;
}

}  // namespace ember
