// Strict parsing of numbers from text that came from outside (command
// lines, config values): no sign, no spaces, no overflow, nothing left over.
#pragma once

#include <cstdint>
#include <string_view>

namespace ember {

// Decimal digits only, at most 19 (always below 2^64).
inline bool parse_u64(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 19) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  *out = v;
  return true;
}

}  // namespace ember
