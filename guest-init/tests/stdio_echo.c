/* A guest program for the stdio channel (console or vsock):
 *
 *   stdio_echo echo [STATUS]   copies stdin to stdout until EOF (64 KiB reads),
 *                              then "bytes=N\n" on stderr; exits STATUS
 *   stdio_echo lines           echoes each line as soon as it is complete
 *                              (round-trip measurements); exits 0 at EOF
 *   stdio_echo abort           echoes, then abort()s (SIGABRT, status 134)
 *   stdio_echo segv            echoes, then writes through NULL (status 139)
 *   stdio_echo probe           reads stdin to EOF (the first read is the
 *                              ready point), then prints "n=<stdin bytes>
 *                              runs=<a global incremented per run>
 *                              realtime=<s> random=<16 bytes hex>"
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static char buf[1 << 16];
static int runs;

static int write_all(int fd, const char* p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w <= 0) return -1;
    p += w, n -= (size_t)w;
  }
  return 0;
}

static long long echo(void) {
  long long total = 0;
  for (;;) {
    ssize_t n = read(0, buf, sizeof buf);
    if (n < 0) return -1;
    if (n == 0) return total;
    if (write_all(1, buf, (size_t)n)) return -1;
    total += n;
  }
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "echo";
  if (!strcmp(mode, "echo") || !strcmp(mode, "abort") || !strcmp(mode, "segv")) {
    long long n = echo();
    char line[64];
    int len = snprintf(line, sizeof line, "bytes=%lld\n", n);
    write_all(2, line, (size_t)len);
    if (!strcmp(mode, "abort")) abort();
    if (!strcmp(mode, "segv")) *(volatile int*)0 = 1;
    return argc > 2 ? atoi(argv[2]) : (n < 0 ? 1 : 0);
  }
  if (!strcmp(mode, "lines")) {
    size_t have = 0;
    for (;;) {
      ssize_t n = read(0, buf + have, sizeof buf - have);
      if (n <= 0) return n < 0;
      have += (size_t)n;
      char* nl;
      while ((nl = memchr(buf, '\n', have))) {
        size_t len = (size_t)(nl - buf) + 1;
        if (write_all(1, buf, len)) return 1;
        memmove(buf, buf + len, have - len);
        have -= len;
      }
      if (have == sizeof buf) {  /* a line longer than the buffer: pass it on */
        if (write_all(1, buf, have)) return 1;
        have = 0;
      }
    }
  }
  if (!strcmp(mode, "probe")) {
    long long total = 0;
    for (;;) {
      ssize_t n = read(0, buf, sizeof buf);
      if (n <= 0) break;
      total += n;
    }
    runs++;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned char r[16];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) return 3;
    printf("n=%lld runs=%d realtime=%lld random=", total, runs, (long long)ts.tv_sec);
    for (int i = 0; i < 16; i++) printf("%02x", r[i]);
    printf("\n");
    return 0;
  }
  fprintf(stderr, "unknown mode %s\n", mode);
  return 2;
}
