/* exit(atoi(argv[1])); no argument: exit 0. Tests exit status propagation. */
#include <stdlib.h>

int main(int argc, char** argv) {
  exit(argc > 1 ? atoi(argv[1]) : 0);
}
