/* A function with a heavy start-up: it sieves every prime below 2^25 before
 * it reads its request (one number per line) and answers how many primes lie
 * at or below each. Template snapshots taken at the first read of stdin skip
 * the sieve on every invocation. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define LIMIT (1u << 25)

static uint32_t prefix[LIMIT / 64 + 1]; /* primes below each multiple of 64 */
static uint64_t composite[LIMIT / 64 + 1];

static int is_composite(uint32_t n) { return (composite[n / 64] >> (n % 64)) & 1; }

int main(void) {
  composite[0] |= 3; /* 0 and 1 */
  for (uint32_t i = 2; (uint64_t)i * i < LIMIT; i++)
    if (!is_composite(i))
      for (uint32_t j = i * i; j < LIMIT; j += i) composite[j / 64] |= 1ull << (j % 64);
  uint32_t count = 0;
  for (uint32_t w = 0; w < LIMIT / 64; w++) {
    prefix[w] = count;
    count += 64 - __builtin_popcountll(composite[w]);
  }
  prefix[LIMIT / 64] = count;

  char line[64];
  while (fgets(line, sizeof line, stdin)) {
    long n = strtol(line, NULL, 10);
    if (n < 0 || n >= LIMIT) {
      printf("out of range: 0..%u\n", LIMIT - 1);
      continue;
    }
    uint32_t c = prefix[n / 64];
    for (uint32_t k = (uint32_t)n / 64 * 64; k <= (uint32_t)n; k++) c += !is_composite(k);
    printf("primes <= %ld: %u\n", n, c);
  }
  return 0;
}
