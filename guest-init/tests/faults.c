/* Dies the way argv[1] says; the VMM must report 128 + the signal. */
#include <stdlib.h>
int main(int argc, char** argv) {
  int k = argc > 1 ? atoi(argv[1]) : 0;
  volatile int z = 0;
  if (k == 1) __asm__ volatile("int3");                    /* SIGTRAP 133 */
  if (k == 2) __asm__ volatile("ud2");                     /* SIGILL 132 */
  if (k == 3) return 5 / z;                                /* SIGFPE 136 */
  if (k == 4) *(volatile char*)0x7fffffff000ull = 1;       /* beyond RAM: SIGSEGV 139 */
  if (k == 5) abort();                                     /* SIGABRT 134 */
  return 0;
}
