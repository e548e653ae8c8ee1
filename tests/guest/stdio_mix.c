/* Writes to stdout and stderr (interleaved, each flushed) and exits 3. Tests
 * that the two streams stay separate and the status comes through. */
#include <stdio.h>

int main(void) {
  printf("to stdout 1\n");
  fflush(stdout);
  fprintf(stderr, "to stderr 1\n");
  printf("to stdout 2\n");
  fflush(stdout);
  fprintf(stderr, "to stderr 2\n");
  return 3;
}
