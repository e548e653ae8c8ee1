/* Copies stdin to stdout in 64 KiB chunks with read/write until EOF, then
 * exits 0 (exits 1 on a read or write error). Tests the console's receive
 * queue, its EOF convention and partial writes. */
#include <errno.h>
#include <unistd.h>

static char buf[64 * 1024];

int main(void) {
  for (;;) {
    ssize_t n = read(0, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return 1;
    if (n == 0) return 0;
    ssize_t done = 0;
    while (done < n) {
      ssize_t w = write(1, buf + done, (size_t)(n - done));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return 1;
      done += w;
    }
  }
}
