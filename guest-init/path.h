// Path normalisation for lookups in the image: every path the program
// passes becomes an absolute path without ".", ".." or repeated slashes,
// the form the image stores (images/FORMAT.md). Pure; unit-tested.
#pragma once

#include <stdint.h>

namespace ember::guest {

inline constexpr uint32_t kPathMax = 4096;

// Joins `base` (absolute, normalised; "" means "/") and `path` (absolute or
// relative), normalises, and writes the result (no trailing slash, "/" for
// the root) with a NUL. Returns its length, or -1 if it does not fit in
// `cap` bytes. ".." at the root stays at the root, as on Linux.
int32_t normalise_path(const char* base, uint32_t base_len, const char* path, uint32_t path_len, char* out,
                       uint32_t cap);

}  // namespace ember::guest
