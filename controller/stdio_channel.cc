#include "controller/stdio_channel.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "api/stdio_protocol.h"

namespace ember::controller {

namespace {

int ms_left(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  if (left <= 0) return 0;
  return left > 1000000 ? 1000000 : static_cast<int>(left) + 1;
}

void set_nonblocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

void put_u32(std::string* s, uint32_t v) {
  char b[4] = {static_cast<char>(v), static_cast<char>(v >> 8), static_cast<char>(v >> 16), static_cast<char>(v >> 24)};
  s->append(b, 4);
}
uint32_t get_u32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return u[0] | (u[1] << 8) | (u[2] << 16) | (static_cast<uint32_t>(u[3]) << 24);
}

}  // namespace

Result<Fd> vsock_connect(const std::string& uds_path, uint32_t port, Clock::time_point deadline, std::string* leftover) {
  struct sockaddr_un addr {};
  addr.sun_family = AF_UNIX;
  if (uds_path.size() >= sizeof addr.sun_path) return Error{"vsock socket path too long: " + uds_path};
  std::memcpy(addr.sun_path, uds_path.c_str(), uds_path.size() + 1);
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return errno_error("socket(AF_UNIX)");
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0)
    return errno_error("connect " + uds_path);
  set_nonblocking(fd.get());
  const std::string hello = "CONNECT " + std::to_string(port) + "\n";
  if (::send(fd.get(), hello.data(), hello.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(hello.size()))
    return errno_error("send CONNECT to " + uds_path);
  std::string line;
  char buf[256];
  for (;;) {
    // Peek so that bytes after the newline stay ours to return.
    const ssize_t n = ::recv(fd.get(), buf, sizeof buf, MSG_PEEK);
    if (n > 0) {
      const void* nl = std::memchr(buf, '\n', static_cast<size_t>(n));
      const size_t take = nl ? static_cast<size_t>(static_cast<const char*>(nl) - buf) + 1 : static_cast<size_t>(n);
      const ssize_t got = ::recv(fd.get(), buf, take, 0);
      if (got <= 0) return errno_error("read the vsock handshake from " + uds_path);
      line.append(buf, static_cast<size_t>(got));
      if (nl) break;
      if (line.size() > 128) return Error{"vsock handshake from " + uds_path + ": no newline in 128 bytes"};
      continue;
    }
    if (n == 0) return Error{"vsock handshake: " + uds_path + " closed the connection (no listener on port " + std::to_string(port) + "?)"};
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return errno_error("read the vsock handshake from " + uds_path);
    struct pollfd p = {fd.get(), POLLIN, 0};
    const int left = ms_left(deadline);
    if (left == 0) return Error{"vsock handshake with " + uds_path + ": timed out"};
    ::poll(&p, 1, left);
  }
  if (line.compare(0, 3, "OK ") != 0) {
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    return Error{"vsock handshake with " + uds_path + ": expected \"OK <port>\", got \"" + line + "\""};
  }
  if (leftover) leftover->clear();
  return fd;
}

Exchange vsock_exchange(int fd, std::string_view input, std::string leftover, Clock::time_point deadline,
                        uint64_t max_output) {
  Exchange x;
  set_nonblocking(fd);
  // Outgoing: stdin frames of at most kMaxFramePayload and the EOF frame,
  // batched into one send of up to kBatch bytes (a small invocation is one
  // write: one notification for the VMM, one wake-up for the guest).
  constexpr size_t kBatch = 256 * 1024;
  size_t in_off = 0;
  bool eof_sent = false, write_dead = false;
  std::string frame;  // the bytes being sent
  size_t frame_off = 0;
  auto next_frame = [&]() -> bool {
    if (eof_sent) return false;
    frame.clear();
    frame_off = 0;
    while (!eof_sent && frame.size() < kBatch) {
      if (in_off < input.size()) {
        const size_t n = std::min<size_t>(input.size() - in_off, abi::kMaxFramePayload);
        put_u32(&frame, abi::kFrameStdin);
        put_u32(&frame, static_cast<uint32_t>(n));
        frame.append(input.data() + in_off, n);
        in_off += n;
      } else {
        put_u32(&frame, abi::kFrameStdinEof);
        put_u32(&frame, 0);
        eof_sent = true;
      }
    }
    return true;
  };
  // Sends what it can of the pending bytes (the socket is non-blocking).
  // An error other than "full": the guest stopped reading (the program
  // exited early), so keep reading for its output and exit status.
  auto send_pending = [&] {
    const ssize_t w = ::send(fd, frame.data() + frame_off, frame.size() - frame_off, MSG_NOSIGNAL);
    if (w > 0) {
      frame_off += static_cast<size_t>(w);
      if (frame_off == frame.size()) next_frame();
    } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
      write_dead = true;
    }
  };
  next_frame();
  send_pending();  // the first batch at once, before any poll
  std::string rbuf = std::move(leftover);
  size_t rpos = 0;
  char chunk[65536];
  for (;;) {
    // Parse every complete frame we have.
    while (rbuf.size() - rpos >= sizeof(abi::FrameHeader)) {
      const uint32_t type = get_u32(rbuf.data() + rpos);
      const uint32_t len = get_u32(rbuf.data() + rpos + 4);
      if (len > abi::kMaxFramePayload) {
        x.end = Exchange::End::kBroken;
        x.error = "the guest sent a frame of " + std::to_string(len) + " bytes (limit " +
                  std::to_string(abi::kMaxFramePayload) + ")";
        return x;
      }
      if (rbuf.size() - rpos < sizeof(abi::FrameHeader) + len) break;
      const char* payload = rbuf.data() + rpos + sizeof(abi::FrameHeader);
      rpos += sizeof(abi::FrameHeader) + len;
      if (type == abi::kFrameStdout || type == abi::kFrameStderr) {
        if (x.out.size() + x.err.size() + len > max_output) {
          x.end = Exchange::End::kTooMuchOutput;
          x.error = "the program wrote more than " + std::to_string(max_output) + " bytes of output";
          return x;
        }
        (type == abi::kFrameStdout ? x.out : x.err).append(payload, len);
      } else if (type == abi::kFrameExit) {
        if (len != sizeof(abi::ExitPayload)) {
          x.end = Exchange::End::kBroken;
          x.error = "the guest sent an exit frame of " + std::to_string(len) + " bytes";
          return x;
        }
        x.exit_kind = get_u32(payload);
        x.exit_value = get_u32(payload + 4);
        if (x.exit_kind != abi::kExitCode && x.exit_kind != abi::kExitSignal) {
          x.end = Exchange::End::kBroken;
          x.error = "the guest sent an exit frame of unknown kind " + std::to_string(x.exit_kind);
          return x;
        }
        x.end = Exchange::End::kExited;
        return x;
      } else {
        x.end = Exchange::End::kBroken;
        x.error = "the guest sent a frame of unknown type " + std::to_string(type);
        return x;
      }
    }
    if (rpos > 65536 && rpos * 2 > rbuf.size()) {
      rbuf.erase(0, rpos);
      rpos = 0;
    }
    const bool want_write = !write_dead && frame_off < frame.size();
    struct pollfd p = {fd, static_cast<short>(POLLIN | (want_write ? POLLOUT : 0)), 0};
    const int left = ms_left(deadline);
    if (left == 0) {
      x.end = Exchange::End::kTimeout;
      return x;
    }
    const int n = ::poll(&p, 1, left);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) continue;
    if (p.revents & POLLIN) {
      const ssize_t got = ::recv(fd, chunk, sizeof chunk, 0);
      if (got > 0) {
        rbuf.append(chunk, static_cast<size_t>(got));
        continue;
      }
      if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
        x.end = Exchange::End::kBroken;
        x.error = got == 0 ? "the VM closed the stdio connection before the program's exit status"
                           : std::string("reading from the VM: ") + std::strerror(errno);
        return x;
      }
    }
    if (want_write && (p.revents & (POLLOUT | POLLERR | POLLHUP))) {
      send_pending();
    } else if (!(p.revents & POLLIN) && (p.revents & (POLLERR | POLLHUP))) {
      x.end = Exchange::End::kBroken;
      x.error = "the VM closed the stdio connection before the program's exit status";
      return x;
    }
  }
}

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
    const int left = ms_left(deadline);
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
