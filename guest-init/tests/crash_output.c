/* Writes to stdout and stderr, then faults: everything written before the
 * fault must reach the host (the VMM drains published output). */
#include <unistd.h>
int main(void) {
  for (int i = 0; i < 5; i++) {
    write(2, "err line\n", 9);
    write(1, "out line\n", 9);
  }
  *(volatile int*)0 = 1;
  return 0;
}
