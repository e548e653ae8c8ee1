#include "guest-init/path.h"

namespace ember::guest {

int32_t normalise_path(const char* base, uint32_t base_len, const char* path, uint32_t path_len, char* out,
                       uint32_t cap) {
  if (cap < 2) return -1;
  uint32_t n = 0;  // out[0..n) is the result so far, without trailing slash ("" = root)
  auto add = [&](const char* s, uint32_t len) -> bool {
    uint32_t i = 0;
    while (i < len) {
      while (i < len && s[i] == '/') i++;
      uint32_t start = i;
      while (i < len && s[i] != '/') i++;
      uint32_t clen = i - start;
      if (clen == 0 || (clen == 1 && s[start] == '.')) continue;
      if (clen == 2 && s[start] == '.' && s[start + 1] == '.') {
        while (n > 0 && out[n - 1] != '/') n--;
        if (n > 0) n--;  // the slash
        continue;
      }
      if (n + 1 + clen + 1 > cap) return false;
      out[n++] = '/';
      for (uint32_t k = 0; k < clen; k++) out[n++] = s[start + k];
    }
    return true;
  };
  if (path_len == 0 || path[0] != '/') {
    if (!add(base, base_len)) return -1;
  }
  if (!add(path, path_len)) return -1;
  if (n == 0) out[n++] = '/';
  out[n] = 0;
  return static_cast<int32_t>(n);
}

}  // namespace ember::guest
