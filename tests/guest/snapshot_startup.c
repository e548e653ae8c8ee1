/* A program with an expensive start-up, for snapshot tests: it builds a
 * 16 MiB table (startups is incremented only there), then answers requests
 * from stdin, one per line, until EOF:
 *   <n>      -> "startups=<s> table[<n mod size>]=<value>"  (value from the table)
 *   time     -> "startups=<s> time=<CLOCK_REALTIME in ns>"
 *   random   -> "startups=<s> random=<16 getrandom bytes, hex>"
 *   crash    -> writes through a NULL pointer (dies of SIGSEGV)
 * A snapshot taken where it first reads stdin, restored any number of times,
 * must always print startups=1: the start-up ran once, before the snapshot. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define TABLE_WORDS (16u * 1024 * 1024 / 8)

static uint64_t table[TABLE_WORDS];
static int startups;

static uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  return x ^ (x >> 33);
}

int main(void) {
  startups++;
  for (uint32_t i = 0; i < TABLE_WORDS; i++) table[i] = mix(i) ^ (i ? table[i - 1] >> 7 : 0);
  char line[256];
  while (fgets(line, sizeof line, stdin)) {
    line[strcspn(line, "\r\n")] = 0;
    if (strcmp(line, "time") == 0) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      printf("startups=%d time=%lld\n", startups, (long long)ts.tv_sec * 1000000000ll + ts.tv_nsec);
    } else if (strcmp(line, "random") == 0) {
      unsigned char b[16];
      if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) return 1;
      printf("startups=%d random=", startups);
      for (int i = 0; i < 16; i++) printf("%02x", b[i]);
      printf("\n");
    } else if (strcmp(line, "crash") == 0) {
      volatile int* volatile p = NULL;
      *p = 1;
    } else {
      uint64_t n = strtoull(line, NULL, 10) % TABLE_WORDS;
      printf("startups=%d table[%llu]=%llu\n", startups, (unsigned long long)n, (unsigned long long)table[n]);
    }
    fflush(stdout);
  }
  return 0;
}
