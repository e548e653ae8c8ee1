/* Prints a line (flushed, so it must reach the host), then writes through a
 * NULL pointer: the VM must end with 128 + SIGSEGV. */
#include <stdio.h>

int main(void) {
  printf("about to segfault\n");
  fflush(stdout);
  volatile int* volatile p = NULL; /* both volatile: the store can be neither dropped nor turned into a trap */
  *p = 42;
  printf("still alive\n");
  return 0;
}
