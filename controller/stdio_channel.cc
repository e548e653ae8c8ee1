#include "controller/stdio_channel.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

namespace ember::controller {

namespace {

void set_nonblocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

}  // namespace

Exchange pipes_exchange(Fd in, int out, int err, std::string_view input, Clock::time_point deadline,
                        uint64_t max_output) {
  Exchange x;
  if (in.valid()) set_nonblocking(in.get());
  set_nonblocking(out);
  set_nonblocking(err);
  size_t in_off = 0;
  if (input.empty()) in.reset();
  bool out_open = true, err_open = true;
  char chunk[65536];
  while (out_open || err_open) {
    struct pollfd p[3];
    int n = 0;
    int idx_out = -1, idx_err = -1, idx_in = -1;
    if (out_open) idx_out = n, p[n++] = {out, POLLIN, 0};
    if (err_open) idx_err = n, p[n++] = {err, POLLIN, 0};
    if (in.valid()) idx_in = n, p[n++] = {in.get(), POLLOUT, 0};
    const int left = poll_ms_left(deadline);
    if (left == 0) {
      x.end = Exchange::End::kTimeout;
      return x;
    }
    const int r = ::poll(p, static_cast<nfds_t>(n), left);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    for (int which : {idx_out, idx_err}) {
      if (which < 0 || !(p[which].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      const ssize_t got = ::read(p[which].fd, chunk, sizeof chunk);
      if (got > 0) {
        if (x.out.size() + x.err.size() + static_cast<size_t>(got) > max_output) {
          x.end = Exchange::End::kTooMuchOutput;
          x.error = "the program wrote more than " + std::to_string(max_output) + " bytes of output";
          return x;
        }
        (which == idx_out ? x.out : x.err).append(chunk, static_cast<size_t>(got));
      } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
        (which == idx_out ? out_open : err_open) = false;
      }
    }
    if (idx_in >= 0 && (p[idx_in].revents & (POLLOUT | POLLERR | POLLHUP))) {
      const ssize_t w = ::write(in.get(), input.data() + in_off, input.size() - in_off);
      if (w > 0) in_off += static_cast<size_t>(w);
      if ((w < 0 && errno != EAGAIN && errno != EINTR) || in_off == input.size()) in.reset();  // EOF (or EPIPE: it stopped reading)
    }
  }
  x.end = Exchange::End::kExited;
  return x;
}

}  // namespace ember::controller
