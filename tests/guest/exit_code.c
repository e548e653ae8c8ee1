/* exit(atoi(argv[1])); no argument: exit 0. A second argument is written to
 * stderr first (a line). Tests exit status propagation, and that what a
 * program says cannot pose as the host's words. */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char** argv) {
  if (argc > 2) fprintf(stderr, "%s\n", argv[2]);
  exit(argc > 1 ? atoi(argv[1]) : 0);
}
