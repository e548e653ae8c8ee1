/* Allocates N MiB (argv[1], default 64) with malloc, writes a pattern into
 * every 4 KiB page, reads it all back, and prints "ok <N>". Exits 1 with a
 * message on stderr if the allocation fails or a page reads back wrong. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char** argv) {
  long mib = argc > 1 ? atol(argv[1]) : 64;
  if (mib <= 0) {
    fprintf(stderr, "touch_memory: bad size '%s'\n", argv[1]);
    return 2;
  }
  size_t size = (size_t)mib << 20;
  unsigned char* p = malloc(size);
  if (p == NULL) {
    fprintf(stderr, "touch_memory: malloc(%ld MiB) failed\n", mib);
    return 1;
  }
  for (size_t off = 0; off < size; off += 4096) {
    uint64_t v = (uint64_t)off * 2654435761u ^ 0x5a5a5a5aU;
    for (int i = 0; i < 8; ++i) p[off + i] = (unsigned char)(v >> (8 * i));
    p[off + 4095] = (unsigned char)(off >> 12);
  }
  for (size_t off = 0; off < size; off += 4096) {
    uint64_t v = (uint64_t)off * 2654435761u ^ 0x5a5a5a5aU;
    for (int i = 0; i < 8; ++i) {
      if (p[off + i] != (unsigned char)(v >> (8 * i))) {
        fprintf(stderr, "touch_memory: mismatch at offset %zu\n", off + i);
        return 1;
      }
    }
    if (p[off + 4095] != (unsigned char)(off >> 12)) {
      fprintf(stderr, "touch_memory: mismatch at offset %zu\n", off + 4095);
      return 1;
    }
  }
  free(p);
  printf("ok %ld\n", mib);
  return 0;
}
