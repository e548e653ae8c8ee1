/* Host side of the stdio protocol over vsock (api/stdio_protocol.h), for
 * the guest scenario tests: connects to a VM's vsock Unix socket the
 * Firecracker way ("CONNECT <port>\n", "OK <hostport>\n"), then
 *
 *   stream mode (default): sends FILE (or nothing) as kFrameStdin frames of
 *     random sizes up to --chunk, then kFrameStdinEof, while reading the
 *     guest's frames: stdout to --out, stderr to --err; prints
 *     "exit code N" or "exit signal N".
 *   --lines N --size S: N round trips of one S-byte line each (the guest
 *     echoes lines), each timed; prints min/p50/p99/max in microseconds,
 *     then sends EOF and waits for the exit frame.
 *
 * Every frame from the guest is checked (type, length, nothing after the
 * exit frame). Exit status: 0 when the exchange completed, 1 otherwise.
 *
 * usage: vsock_client UDS [--port P] [--stdin FILE] [--chunk N] [--out FILE]
 *        [--err FILE] [--lines N --size S] [--timeout-ms T]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum { kStdin = 1, kStdinEof = 2, kStdout = 3, kStderr = 4, kExit = 5 };
#define kMaxPayload (64 * 1024)

static int timeout_ms = 30000;
static struct timespec t0;

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (t.tv_sec - t0.tv_sec) * 1e6 + (t.tv_nsec - t0.tv_nsec) / 1e3;
}

static void die(const char* what) {
  fprintf(stderr, "vsock_client: %s%s%s\n", what, errno ? ": " : "", errno ? strerror(errno) : "");
  exit(1);
}

/* --- reading frames (incremental) --- */
static uint8_t in_buf[8 + kMaxPayload];
static size_t in_have;
static int exit_seen, exit_kind, exit_value;
static FILE *out_f, *err_f;
static unsigned long long out_bytes;

/* Consumes complete frames from in_buf. */
static void take_frames(void) {
  size_t at = 0;
  while (in_have - at >= 8) {
    uint32_t type, len;
    memcpy(&type, in_buf + at, 4);
    memcpy(&len, in_buf + at + 4, 4);
    if (len > kMaxPayload) { errno = 0; die("frame longer than kMaxFramePayload"); }
    if (exit_seen) { errno = 0; die("frame after the exit frame"); }
    if (in_have - at < 8 + (size_t)len) break;
    const uint8_t* p = in_buf + at + 8;
    switch (type) {
      case kStdout:
        if (out_f && len) fwrite(p, 1, len, out_f);
        out_bytes += len;
        break;
      case kStderr:
        if (err_f && len) fwrite(p, 1, len, err_f);
        break;
      case kExit:
        if (len != 8) { errno = 0; die("exit frame with a payload other than 8 bytes"); }
        memcpy(&exit_kind, p, 4);
        memcpy(&exit_value, p + 4, 4);
        exit_seen = 1;
        break;
      default:
        errno = 0;
        die("unknown frame type from the guest");
    }
    at += 8 + len;
  }
  memmove(in_buf, in_buf + at, in_have - at);
  in_have -= at;
}

/* Reads what the socket has; returns 0 at EOF. */
static int pump_in(int fd) {
  ssize_t n = read(fd, in_buf + in_have, sizeof in_buf - in_have);
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR) return 1;
    die("read");
  }
  if (n == 0) return 0;
  in_have += (size_t)n;
  take_frames();
  return 1;
}

/* --- writing frames --- */
static uint8_t out_buf[1 << 20];
static size_t out_have, out_off;

static void queue_frame(uint32_t type, const void* data, uint32_t len) {
  if (out_have + 8 + len > sizeof out_buf) { errno = 0; die("internal: output buffer full"); }
  memcpy(out_buf + out_have, &type, 4);
  memcpy(out_buf + out_have + 4, &len, 4);
  if (len) memcpy(out_buf + out_have + 8, data, len);
  out_have += 8 + len;
}

static void pump_out(int fd) {
  while (out_off < out_have) {
    ssize_t n = write(fd, out_buf + out_off, out_have - out_off);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return;
      die("write");
    }
    out_off += (size_t)n;
  }
  out_have = out_off = 0;
}

/* One poll round: writes what is queued, reads what came. */
static int step(int fd, int want_write) {
  struct pollfd p = {fd, POLLIN | (want_write ? POLLOUT : 0), 0};
  int r = poll(&p, 1, timeout_ms);
  if (r < 0 && errno != EINTR) die("poll");
  if (r == 0) { errno = 0; die("timed out waiting for the guest"); }
  if (p.revents & POLLOUT) pump_out(fd);
  if (p.revents & (POLLIN | POLLHUP | POLLERR)) return pump_in(fd);
  return 1;
}

static int cmp_double(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char** argv) {
  const char *uds = NULL, *stdin_path = NULL, *out_path = NULL, *err_path = NULL;
  unsigned port = 1024, chunk = kMaxPayload;
  long lines = 0, size = 16;
  for (int i = 1; i < argc; i++) {
    const char* a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--port") && v) port = (unsigned)atoi(v), i++;
    else if (!strcmp(a, "--stdin") && v) stdin_path = v, i++;
    else if (!strcmp(a, "--chunk") && v) chunk = (unsigned)atoi(v), i++;
    else if (!strcmp(a, "--out") && v) out_path = v, i++;
    else if (!strcmp(a, "--err") && v) err_path = v, i++;
    else if (!strcmp(a, "--lines") && v) lines = atol(v), i++;
    else if (!strcmp(a, "--size") && v) size = atol(v), i++;
    else if (!strcmp(a, "--timeout-ms") && v) timeout_ms = atoi(v), i++;
    else if (!uds && a[0] != '-') uds = a;
    else { fprintf(stderr, "vsock_client: bad argument %s\n", a); return 2; }
  }
  if (!uds || chunk == 0 || chunk > kMaxPayload || size < 1 || size > 60000) {
    fprintf(stderr, "usage: vsock_client UDS [--port P] [--stdin FILE] [--chunk N] [--out FILE] [--err FILE] "
                    "[--lines N --size S] [--timeout-ms T]\n");
    return 2;
  }
  clock_gettime(CLOCK_MONOTONIC, &t0);
  out_f = out_path ? fopen(out_path, "w") : NULL;
  err_f = err_path ? fopen(err_path, "w") : NULL;
  if ((out_path && !out_f) || (err_path && !err_f)) die("open output");

  /* Connect (the VMM may still be creating the socket). */
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0) die("socket");
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(uds) >= sizeof sa.sun_path) { errno = 0; die("socket path too long"); }
  strcpy(sa.sun_path, uds);
  for (int tries = 0;; tries++) {
    if (connect(fd, (struct sockaddr*)&sa, sizeof sa) == 0) break;
    if ((errno != ENOENT && errno != ECONNREFUSED) || tries > timeout_ms / 5) die("connect");
    usleep(5000);
  }
  char line[64];
  int n = snprintf(line, sizeof line, "CONNECT %u\n", port);
  if (write(fd, line, (size_t)n) != n) die("write CONNECT");
  /* "OK <port>\n", byte by byte so no frame bytes are swallowed. */
  size_t got = 0;
  struct pollfd pw = {fd, POLLIN, 0};
  while (got < sizeof line - 1) {
    if (poll(&pw, 1, timeout_ms) <= 0) { errno = 0; die("no answer to CONNECT"); }
    ssize_t r = read(fd, line + got, 1);
    if (r <= 0) { errno = 0; die("connection closed instead of OK (guest refused?)"); }
    if (line[got++] == '\n') break;
  }
  line[got] = 0;
  if (strncmp(line, "OK ", 3) != 0) { errno = 0; die("no OK after CONNECT"); }
  const double connected_us = now_us();
  fcntl(fd, F_SETFL, O_NONBLOCK);

  int rc = 0, eof_queued = 0;
  if (lines > 0) {
    double* rtt = malloc(sizeof(double) * (size_t)lines);
    char* msg = malloc((size_t)size);
    for (long i = 0; i < lines; i++) {
      for (long k = 0; k < size - 1; k++) msg[k] = (char)('a' + (i + k) % 26);
      msg[size - 1] = '\n';
      const unsigned long long want = out_bytes + (unsigned long long)size;
      const double start = now_us();
      queue_frame(kStdin, msg, (uint32_t)size);
      while (out_bytes < want) {
        if (!step(fd, out_have > 0)) { errno = 0; die("guest closed the connection"); }
        if (exit_seen) { errno = 0; die("guest exited during the round trips"); }
      }
      rtt[i] = now_us() - start;
    }
    qsort(rtt, (size_t)lines, sizeof *rtt, cmp_double);
    printf("round trips %ld of %ld bytes: min %.1f us, p50 %.1f us, p99 %.1f us, max %.1f us\n", lines, size, rtt[0],
           rtt[lines / 2], rtt[(lines * 99) / 100], rtt[lines - 1]);
    free(rtt);
    free(msg);
  } else {
    FILE* in = stdin_path ? fopen(stdin_path, "r") : NULL;
    if (stdin_path && !in) die("open --stdin");
    static uint8_t data[kMaxPayload];
    unsigned seed = 12345;
    int done = in == NULL;
    while (!done || out_have) {
      if (!done && out_have + 8 + kMaxPayload <= sizeof out_buf) {
        seed = seed * 1103515245u + 12345u;
        size_t want = 1 + (seed >> 8) % chunk;
        size_t r = fread(data, 1, want, in);
        if (r) queue_frame(kStdin, data, (uint32_t)r);
        if (r < want) {
          done = 1;
          queue_frame(kStdinEof, NULL, 0);  /* with the last data: one write, as a controller would */
          eof_queued = 1;
        }
      }
      if (!out_have) continue;  /* nothing to send yet: read more input first (or stop) */
      if (!step(fd, 1) && !exit_seen) { errno = 0; die("guest closed the connection"); }
      if (exit_seen) break;  /* the program ended before reading everything */
    }
    if (in) fclose(in);
  }
  if (!exit_seen) {
    if (!eof_queued) queue_frame(kStdinEof, NULL, 0);
    while (!exit_seen) {
      if (!step(fd, out_have > 0)) break;
    }
  }
  if (!exit_seen) {
    fprintf(stderr, "vsock_client: connection ended without an exit frame\n");
    rc = 1;
  } else {
    printf("exit %s %d\n", exit_kind == 0 ? "code" : exit_kind == 1 ? "signal" : "unknown", exit_value);
    fprintf(stderr, "vsock_client: %.0f us from OK to the exit frame\n", now_us() - connected_us);
  }
  if (out_f) fclose(out_f);
  if (err_f) fclose(err_f);
  close(fd);
  return rc;
}
