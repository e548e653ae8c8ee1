/* Exercises the syscalls static musl/glibc programs use (memory, files and
 * directories of the image, devices, clocks, identity, signals, poll) and
 * prints "fails=0" when every check holds. Needs the files of data/ packed
 * at /data. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/times.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

static volatile int got_sig = 0, got_info = 0;
static void on_usr1(int s) { got_sig = s; }
static void on_info(int s, siginfo_t* si, void* uc) { (void)uc; got_info = s * 1000 + si->si_signo; }

#define CHECK(c) do { if (!(c)) { printf("FAIL line %d: %s (errno %d %s)\n", __LINE__, #c, errno, strerror(errno)); fails++; } } while (0)

int main(int argc, char** argv) {
  int fails = 0;
  (void)argc; (void)argv;
  // malloc: small, large (mmap), realloc growth (mremap), free
  char* p = malloc(100); CHECK(p); strcpy(p, "x");
  char* big = malloc(10 << 20); CHECK(big); memset(big, 7, 10 << 20);
  big = realloc(big, 40 << 20); CHECK(big); CHECK(big[(10 << 20) - 1] == 7); memset(big, 1, 40 << 20);
  free(big);
  char* big2 = calloc(1, 20 << 20); CHECK(big2);
  { long sum = 0; for (long i = 0; i < (20 << 20); i += 4096) sum += big2[i]; CHECK(sum == 0); }
  free(big2);
  // mmap anon, munmap, reuse zeroed
  char* m = mmap(0, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); CHECK(m != MAP_FAILED);
  memset(m, 0x55, 1 << 20); CHECK(munmap(m, 1 << 20) == 0);
  char* m2 = mmap(0, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); CHECK(m2 != MAP_FAILED);
  { int bad = 0; for (int i = 0; i < (1 << 20); i += 512) bad |= m2[i]; CHECK(bad == 0); }
  char* m3 = mmap(m2 + 4096, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0); CHECK(m3 == m2 + 4096);
  CHECK(madvise(m2, 4096, MADV_DONTNEED) == 0);
  CHECK(mprotect(m2, 4096, PROT_READ) == 0);
  // files
  int fd = open("/data/hello.txt", O_RDONLY); CHECK(fd >= 0);
  char buf[256]; ssize_t n = read(fd, buf, sizeof buf); CHECK(n == 12); buf[n > 0 ? n : 0] = 0; CHECK(strcmp(buf, "hello file\n\n") == 0);
  CHECK(lseek(fd, 6, SEEK_SET) == 6); n = read(fd, buf, 4); CHECK(n == 4 && memcmp(buf, "file", 4) == 0);
  CHECK(pread(fd, buf, 5, 0) == 5 && memcmp(buf, "hello", 5) == 0);
  struct stat st; CHECK(fstat(fd, &st) == 0 && st.st_size == 12 && S_ISREG(st.st_mode));
  char* fm = mmap(0, 12, PROT_READ, MAP_PRIVATE, fd, 0); CHECK(fm != MAP_FAILED && memcmp(fm, "hello file", 10) == 0);
  int fd2 = dup(fd); CHECK(fd2 > fd); CHECK(lseek(fd2, 0, SEEK_CUR) == lseek(fd, 0, SEEK_CUR));
  CHECK(dup2(fd, 50) == 50); CHECK(fcntl(50, F_GETFD) == 0); CHECK(fcntl(fd, F_SETFD, FD_CLOEXEC) == 0 && fcntl(fd, F_GETFD) == FD_CLOEXEC);
  CHECK(close(fd) == 0 && close(fd2) == 0 && close(50) == 0); CHECK(close(fd) == -1 && errno == EBADF);
  CHECK(open("/nope", O_RDONLY) == -1 && errno == ENOENT);
  CHECK(open("/data/hello.txt", O_WRONLY) == -1 && errno == EROFS);
  CHECK(open("/data/new", O_WRONLY | O_CREAT, 0644) == -1 && errno == EROFS);
  CHECK(stat("/data", &st) == 0 && S_ISDIR(st.st_mode));
  CHECK(stat("/data/hello.txt/x", &st) == -1);
  CHECK(access("/data/hello.txt", R_OK) == 0); CHECK(access("/data/hello.txt", W_OK) == -1);
  // directories
  DIR* d = opendir("/data"); CHECK(d);
  int entries = 0, saw_sub = 0, saw_file = 0;
  if (d) { struct dirent* e; while ((e = readdir(d))) { entries++; if (!strcmp(e->d_name, "sub") && e->d_type == DT_DIR) saw_sub++; if (!strcmp(e->d_name, "hello.txt") && e->d_type == DT_REG) saw_file++; } closedir(d); }
  CHECK(entries == 4 && saw_sub == 1 && saw_file == 1);
  CHECK(chdir("/data/sub") == 0); char cwd[128]; CHECK(getcwd(cwd, sizeof cwd) && !strcmp(cwd, "/data/sub"));
  fd = open("../hello.txt", O_RDONLY); CHECK(fd >= 0); close(fd);
  fd = open("a.txt", O_RDONLY); CHECK(fd >= 0); close(fd);
  CHECK(chdir("/") == 0);
  FILE* f = fopen("/data/sub/b.txt", "r"); CHECK(f); if (f) { CHECK(fgets(buf, sizeof buf, f) && !strcmp(buf, "bee\n")); fclose(f); }
  // devices
  fd = open("/dev/null", O_RDWR); CHECK(fd >= 0 && write(fd, "x", 1) == 1 && read(fd, buf, 1) == 0); close(fd);
  fd = open("/dev/urandom", O_RDONLY); CHECK(fd >= 0 && read(fd, buf, 32) == 32); close(fd);
  // time
  struct timespec t0, t1; CHECK(clock_gettime(CLOCK_MONOTONIC, &t0) == 0);
  struct timespec req = {0, 20 * 1000 * 1000}; CHECK(nanosleep(&req, 0) == 0);
  CHECK(clock_gettime(CLOCK_MONOTONIC, &t1) == 0);
  long el = (t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec); CHECK(el >= 20000000 && el < 200000000);
  struct timeval tv; CHECK(gettimeofday(&tv, 0) == 0 && tv.tv_sec > 1600000000);
  CHECK(time(0) > 1600000000);
  struct tms tm; CHECK(times(&tm) != (clock_t)-1);
  // identity & misc
  struct utsname u; CHECK(uname(&u) == 0 && !strcmp(u.sysname, "Linux") && !strcmp(u.machine, "x86_64"));
  CHECK(getpid() == 1 && getppid() == 0 && getuid() == 0);
  unsigned char r[64]; CHECK(getrandom(r, 64, 0) == 64);
  struct rlimit rl; CHECK(getrlimit(RLIMIT_STACK, &rl) == 0 && rl.rlim_cur == 8 << 20);
  CHECK(sysconf(_SC_NPROCESSORS_ONLN) >= 1);
  CHECK(sysconf(_SC_PAGESIZE) == 4096);
  CHECK(isatty(1) == 0);
  // signals
  signal(SIGUSR1, on_usr1); CHECK(raise(SIGUSR1) == 0 && got_sig == SIGUSR1);
  struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_sigaction = on_info; sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  stack_t ss; ss.ss_sp = malloc(65536); ss.ss_size = 65536; ss.ss_flags = 0; CHECK(sigaltstack(&ss, 0) == 0);
  CHECK(sigaction(SIGUSR2, &sa, 0) == 0); CHECK(kill(getpid(), SIGUSR2) == 0 && got_info == SIGUSR2 * 1001);
  signal(SIGCHLD, SIG_DFL); CHECK(raise(SIGCHLD) == 0);
  signal(SIGTERM, SIG_IGN); CHECK(raise(SIGTERM) == 0);
  sigset_t set; sigemptyset(&set); sigaddset(&set, SIGUSR1); got_sig = 0;
  CHECK(sigprocmask(SIG_BLOCK, &set, 0) == 0); raise(SIGUSR1); CHECK(got_sig == 0);
  CHECK(sigprocmask(SIG_UNBLOCK, &set, 0) == 0); CHECK(got_sig == SIGUSR1);
  // poll on stdout
  struct pollfd pf = {1, POLLOUT, 0}; CHECK(poll(&pf, 1, 0) == 1 && (pf.revents & POLLOUT));
  // stdout buffered writes of many sizes
  for (int i = 0; i < 3; i++) fprintf(stderr, "stderr line %d\n", i);
  printf("fails=%d\n", fails);
  return fails != 0;
}
