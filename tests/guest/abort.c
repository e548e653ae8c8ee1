/* Prints a line (flushed), then abort(): the VM must end with 128 + SIGABRT. */
#include <stdio.h>
#include <stdlib.h>

int main(void) {
  printf("about to abort\n");
  fflush(stdout);
  abort();
}
