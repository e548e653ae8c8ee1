/* Reads the file at argv[1] with open/fstat/read/lseek/pread and prints
 *   size=<bytes> fnv1a64=<16 hex digits>
 * where fnv1a64 is FNV-1a 64-bit (offset basis 0xcbf29ce484222325, prime
 * 0x100000001b3) over the whole content. Every way of reading must agree:
 * fstat size == bytes read == lseek(SEEK_END); pread of each 4 KiB block and
 * of the last byte matches what read returned. Any disagreement or error
 * prints one line on stderr and exits 1. Tests files packed in the image. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int fail(const char* what) {
  fprintf(stderr, "file_read: %s: %s\n", what, strerror(errno));
  return 1;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: file_read PATH\n");
    return 2;
  }
  int fd = open(argv[1], O_RDONLY);
  if (fd < 0) return fail(argv[1]);
  struct stat st;
  if (fstat(fd, &st) != 0) return fail("fstat");
  size_t size = (size_t)st.st_size;
  unsigned char* data = malloc(size + 1);
  if (data == NULL) return fail("malloc");
  size_t got = 0;
  for (;;) {
    ssize_t n = read(fd, data + got, size + 1 - got);  /* +1: a longer file shows up */
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail("read");
    if (n == 0) break;
    got += (size_t)n;
    if (got > size) break;
  }
  if (got != size) {
    errno = EIO;
    return fail("read returned a size different from fstat");
  }
  off_t end = lseek(fd, 0, SEEK_END);
  if (end < 0) return fail("lseek");
  if ((size_t)end != size) {
    errno = EIO;
    return fail("lseek(SEEK_END) differs from fstat");
  }
  unsigned char block[4096];
  for (size_t off = 0; off < size; off += sizeof block) {
    size_t want = size - off < sizeof block ? size - off : sizeof block;
    ssize_t n = pread(fd, block, want, (off_t)off);
    if (n != (ssize_t)want || memcmp(block, data + off, want) != 0) {
      errno = EIO;
      return fail("pread differs from read");
    }
  }
  if (size > 0 && (pread(fd, block, 1, (off_t)(size - 1)) != 1 || block[0] != data[size - 1])) {
    errno = EIO;
    return fail("pread of the last byte");
  }
  if (pread(fd, block, 1, (off_t)size) != 0) {
    errno = EIO;
    return fail("pread at end of file did not return 0");
  }
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < size; ++i) {
    h ^= data[i];
    h *= 0x100000001b3ULL;
  }
  printf("size=%zu fnv1a64=%016llx\n", size, (unsigned long long)h);
  close(fd);
  free(data);
  return 0;
}
