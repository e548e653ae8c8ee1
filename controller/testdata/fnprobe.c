/* emberd's test function. It reads all of stdin, then the first line says
 * what to do; anything else is echoed back unchanged:
 *   exit N       print "exit N" and exit with status N
 *   sleep MS     sleep MS milliseconds, then print "slept MS"
 *   sleep MS NAME  the same, then print "slept MS VALUE" (VALUE of NAME):
 *                which version served a long invocation
 *   stderr       "out" on stdout, "err" on stderr, exit 3
 *   spin         loop forever (for timeouts)
 *   big N        write N bytes of 'x'
 *   crash        die of SIGSEGV
 *   counter      print how many times this process has served (always 1:
 *                a VM never serves two invocations)
 *   env NAME     print the value of NAME
 *   random       print AT_RANDOM's 16 bytes and 16 bytes of getrandom, in hex
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static int served;

static char* read_all(size_t* len) {
  size_t cap = 1 << 16, n = 0;
  char* buf = malloc(cap + 1);
  for (;;) {
    if (n == cap) {
      cap *= 2;
      buf = realloc(buf, cap + 1);
    }
    ssize_t r = read(0, buf + n, cap - n);
    if (r <= 0) break;
    n += (size_t)r;
  }
  buf[n] = 0;
  *len = n;
  return buf;
}

static void write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w <= 0) exit(1);
    p += w;
    n -= (size_t)w;
  }
}

int main(void) {
  size_t len;
  char* in = read_all(&len);
  served++;
  long arg = 0;
  char name[64];
  if (sscanf(in, "exit %ld", &arg) == 1) {
    printf("exit %ld\n", arg);
    return (int)arg;
  }
  if (sscanf(in, "sleep %ld", &arg) == 1) {
    struct timespec ts = {arg / 1000, (arg % 1000) * 1000000};
    nanosleep(&ts, NULL);
    if (sscanf(in, "sleep %*d %63s", name) == 1) {
      const char* v = getenv(name);
      printf("slept %ld %s\n", arg, v ? v : "(unset)");
    } else {
      printf("slept %ld\n", arg);
    }
    return 0;
  }
  if (strncmp(in, "stderr", 6) == 0) {
    printf("out\n");
    fflush(stdout);
    fprintf(stderr, "err\n");
    return 3;
  }
  if (strncmp(in, "spin", 4) == 0) {
    for (volatile unsigned long i = 0;; i++) {
    }
  }
  if (sscanf(in, "big %ld", &arg) == 1) {
    char chunk[4096];
    memset(chunk, 'x', sizeof chunk);
    while (arg > 0) {
      size_t n = arg > (long)sizeof chunk ? sizeof chunk : (size_t)arg;
      write_all(1, chunk, n);
      arg -= (long)n;
    }
    return 0;
  }
  if (strncmp(in, "crash", 5) == 0) {
    raise(SIGSEGV);
    *(volatile int*)0 = 1;
  }
  if (strncmp(in, "counter", 7) == 0) {
    printf("%d\n", served);
    return 0;
  }
  if (sscanf(in, "env %63s", name) == 1) {
    const char* v = getenv(name);
    printf("%s\n", v ? v : "(unset)");
    return 0;
  }
  if (strncmp(in, "random", 6) == 0) {
    const unsigned char* at = (const unsigned char*)getauxval(AT_RANDOM);
    unsigned char now[16];
    if (!at || getrandom(now, sizeof now, 0) != (ssize_t)sizeof now) return 1;
    for (int i = 0; i < 16; i++) printf("%02x", at[i]);
    printf(" ");
    for (int i = 0; i < 16; i++) printf("%02x", now[i]);
    printf("\n");
    return 0;
  }
  write_all(1, in, len);
  return 0;
}
