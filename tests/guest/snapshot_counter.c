/* For reset-in-place tests: waits for stdin (the snapshot point), then
 * increments a global and prints it, and exits 0. Restored from a snapshot
 * and reset in place any number of times, it must always print 1: a reset
 * puts memory back exactly as it was at the snapshot. */
#include <stdio.h>
#include <unistd.h>

static int counter;

int main(void) {
  char c;
  if (read(0, &c, 1) < 0) return 1;
  counter++;
  printf("%d\n", counter);
  return 0;
}
