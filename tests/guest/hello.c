/* The smallest useful guest program: one line to stdout, exit 0. */
#include <stdio.h>

int main(void) {
  printf("hello, world\n");
  return 0;
}
