/* Prints "argc=N", then "argv[i]=..." for each argument and "env=..." for
 * each environ entry, one per line. Tests the stack the runtime builds. */
#include <stdio.h>

extern char** environ;

int main(int argc, char** argv) {
  printf("argc=%d\n", argc);
  for (int i = 0; i < argc; ++i) printf("argv[%d]=%s\n", i, argv[i]);
  for (char** e = environ; *e != NULL; ++e) printf("env=%s\n", *e);
  return 0;
}
