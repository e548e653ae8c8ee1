/* Signal handlers called synchronously: 20000 handlers left by siglongjmp
 * after a syscall inside them, and handlers raising signals (nested). */
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
static sigjmp_buf env;
static int handled = 0, nested = 0;
static void h(int s) { (void)s; handled++; write(1, "", 0); siglongjmp(env, 1); }
static void h2(int s) { (void)s; nested++; }
static void h1(int s) { (void)s; raise(SIGUSR2); nested += 10; }
int main(void) {
  signal(SIGUSR1, h);
  for (int i = 0; i < 20000; i++) {
    if (sigsetjmp(env, 1) == 0) raise(SIGUSR1);
  }
  struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = h2; sigaction(SIGUSR2, &sa, 0);
  sa.sa_handler = h1; sigaction(SIGHUP, &sa, 0);
  for (int i = 0; i < 1000; i++) raise(SIGHUP);
  printf("handled %d nested %d\n", handled, nested);
  return 0;
}
