// Nearest-rank percentiles, for every report of latencies (emberd's
// describe, the benchmarks).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

namespace ember {

// The smallest sample with at least a fraction p (0..1] of the samples at or
// below it, from samples sorted ascending; T{} when there are none.
template <typename T>
T nearest_rank(const std::vector<T>& sorted, double p) {
  if (sorted.empty()) return T{};
  const auto rank = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

}  // namespace ember
