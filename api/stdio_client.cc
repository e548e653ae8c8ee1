#include "api/stdio_client.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "api/stdio_frames.h"

namespace ember::stdio {

namespace {

constexpr size_t kMaxAnswer = 128;  // "OK 4294967295\n" is 14

std::string frame_error_text(const abi::FrameReader& r) {
  const std::string v = std::to_string(r.error_value());
  switch (r.error()) {
    case abi::FrameError::kTooLong:
      return "the guest sent a frame of " + v + " bytes (limit " + std::to_string(abi::kMaxFramePayload) + ")";
    case abi::FrameError::kUnknownType: return "the guest sent a frame of unknown type " + v;
    case abi::FrameError::kBadLength: return "the guest sent an exit frame of " + v + " bytes";
    case abi::FrameError::kBadExitKind: return "the guest sent an exit frame of unknown kind " + v;
    case abi::FrameError::kNone: break;
  }
  return "";
}

// "OK <hostport>" (without the newline), or why not.
Result<uint32_t> parse_answer(std::string line, const std::string& uds_path) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  if (line.compare(0, 3, "OK ") != 0)
    return Error{"vsock handshake with " + uds_path + ": expected \"OK <port>\", got \"" + line + "\""};
  return static_cast<uint32_t>(std::strtoul(line.c_str() + 3, nullptr, 10));
}

Result<Fd> open_socket(const std::string& uds_path, Clock::time_point deadline, bool wait_for_socket) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (uds_path.size() >= sizeof addr.sun_path) return Error{"vsock socket path too long: " + uds_path};
  std::memcpy(addr.sun_path, uds_path.c_str(), uds_path.size() + 1);
  for (;;) {
    Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid()) return errno_error("socket(AF_UNIX)");
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) | O_NONBLOCK);
      return fd;
    }
    const bool not_yet = errno == ENOENT || errno == ECONNREFUSED || errno == EAGAIN;
    if (!wait_for_socket || !not_yet || Clock::now() >= deadline) return errno_error("connect " + uds_path);
    ::usleep(1000);
  }
}

}  // namespace

Result<Connection> connect(const std::string& uds_path, Clock::time_point deadline, const ConnectOptions& o) {
  Connection c;
  EMBER_TRY(c.fd, open_socket(uds_path, deadline, o.wait_for_socket));
  const std::string hello = "CONNECT " + std::to_string(o.port) + "\n";
  if (o.pipelined) {
    c.leftover = hello;  // exchange() sends it first (see `answered`)
    return c;
  }
  if (::send(c.fd.get(), hello.data(), hello.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(hello.size()))
    return errno_error("send CONNECT to " + uds_path);
  std::string got;
  char buf[256];
  for (;;) {
    const ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, 0);
    if (n > 0) {
      got.append(buf, static_cast<size_t>(n));
      const size_t nl = got.find('\n');
      if (nl == std::string::npos) {
        if (got.size() > kMaxAnswer) return Error{"vsock handshake from " + uds_path + ": no newline in 128 bytes"};
        continue;
      }
      EMBER_TRY(c.host_port, parse_answer(got.substr(0, nl), uds_path));
      c.leftover = got.substr(nl + 1);
      c.answered = true;
      return c;
    }
    if (n == 0)
      return Error{"vsock handshake: " + uds_path + " closed the connection (no listener on port " +
                   std::to_string(o.port) + "?)"};
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return errno_error("read the vsock handshake from " + uds_path);
    pollfd p = {c.fd.get(), POLLIN, 0};
    const int left = poll_ms_left(deadline);
    if (left == 0) return Error{"vsock handshake with " + uds_path + ": timed out"};
    ::poll(&p, 1, left);
  }
}

Exchange exchange(Connection& c, std::string_view input, Clock::time_point deadline, uint64_t max_output,
                  size_t chunk) {
  Exchange x;
  if (chunk == 0 || chunk > abi::kMaxFramePayload) chunk = abi::kMaxFramePayload;
  const int fd = c.fd.get();
  // Outgoing: a window of the byte stream (a pipelined CONNECT line, stdin
  // frames, the EOF frame), refilled as it drains, so that a small
  // invocation is one write: one notification for the VMM, one wake-up for
  // the guest.
  constexpr size_t kWindow = 256 * 1024;
  std::string out;
  if (!c.answered) out = std::move(c.leftover), c.leftover.clear();
  size_t out_off = 0, in_off = 0;
  bool eof_queued = false, write_dead = false;
  auto refill = [&] {
    out.erase(0, out_off);
    out_off = 0;
    while (!eof_queued && out.size() < kWindow) {
      const size_t n = std::min(chunk, input.size() - in_off);
      uint8_t h[sizeof(abi::FrameHeader)];
      abi::put_frame_header(h, n ? abi::kFrameStdin : abi::kFrameStdinEof, static_cast<uint32_t>(n));
      out.append(reinterpret_cast<const char*>(h), sizeof h);
      out.append(input.data() + in_off, n);
      in_off += n;
      eof_queued = n == 0;
    }
  };
  // Sends what the socket takes now. An error other than "full": the guest
  // stopped reading (the program exited early, the VMM closed our input),
  // so keep reading for its output and exit status.
  auto send_pending = [&] {
    const ssize_t w = ::send(fd, out.data() + out_off, out.size() - out_off, MSG_NOSIGNAL);
    if (w > 0) {
      out_off += static_cast<size_t>(w);
      if (out.size() - out_off < kWindow / 2) refill();
    } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
      write_dead = true;
    }
  };
  abi::FrameReader frames(abi::FrameSource::kGuest);
  std::string answer;  // a pipelined CONNECT's "OK" line, as it arrives
  // Takes what the guest sent; true once the exchange has its verdict.
  auto take = [&](const char* p, size_t n) -> bool {
    if (!c.answered && n) {
      const void* nl = std::memchr(p, '\n', n);
      const size_t k = nl ? static_cast<size_t>(static_cast<const char*>(nl) - p) + 1 : n;
      answer.append(p, k);
      p += k, n -= k;
      if (!nl && answer.size() <= kMaxAnswer) return false;
      auto port = parse_answer(answer, "the VM's vsock socket");
      if (!port) {
        x.error = port.message();
        return true;
      }
      c.host_port = *port;
      c.answered = true;
    }
    while (n) {
      abi::FrameReader::Piece piece;
      const uint32_t used = frames.next(reinterpret_cast<const uint8_t*>(p), n > 0xffffffffu ? 0xffffffffu : static_cast<uint32_t>(n),
                                        0xffffffffu, &piece);
      p += used, n -= used;
      if (frames.error() != abi::FrameError::kNone) {
        x.error = frame_error_text(frames);
        return true;
      }
      if (piece.len) {
        if (x.out.size() + x.err.size() + piece.len > max_output) {
          x.end = Exchange::End::kTooMuchOutput;
          x.error = "the program wrote more than " + std::to_string(max_output) + " bytes of output";
          return true;
        }
        (piece.type == abi::kFrameStdout ? x.out : x.err).append(reinterpret_cast<const char*>(piece.data), piece.len);
      }
      if (frames.ended()) {
        x.end = Exchange::End::kExited;
        x.exit_kind = frames.exit().kind;
        x.exit_value = frames.exit().value;
        return true;
      }
    }
    return false;
  };
  refill();
  send_pending();  // the first window at once, before any poll
  if (c.answered && take(c.leftover.data(), c.leftover.size())) return x;
  c.leftover.clear();
  std::vector<char> buf(64 * 1024);
  for (;;) {
    const bool want_write = !write_dead && out_off < out.size();
    pollfd p = {fd, static_cast<short>(POLLIN | (want_write ? POLLOUT : 0)), 0};
    const int left = poll_ms_left(deadline);
    if (left == 0) {
      x.end = Exchange::End::kTimeout;
      return x;
    }
    const int n = ::poll(&p, 1, left);
    if (n <= 0) continue;  // EINTR, or the deadline: checked above
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      const ssize_t got = ::recv(fd, buf.data(), buf.size(), 0);
      if (got > 0) {
        if (take(buf.data(), static_cast<size_t>(got))) return x;
        continue;
      }
      if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
        x.error = got != 0               ? std::string("reading from the VM: ") + std::strerror(errno)
                  : c.answered           ? "the VM closed the stdio connection before the program's exit status"
                                         : "the guest refused the connection (nothing listens on its port)";
        return x;
      }
    }
    if (want_write && (p.revents & (POLLOUT | POLLERR | POLLHUP))) send_pending();
  }
}

Result<Exchange> invoke(const std::string& uds_path, std::string_view input, int timeout_ms, uint64_t max_output) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  EMBER_TRY(Connection c, connect(uds_path, deadline, ConnectOptions{.wait_for_socket = true, .pipelined = true}));
  Exchange x = exchange(c, input, deadline, max_output);
  if (x.end == Exchange::End::kTimeout) return Error{"vsock " + uds_path + ": no exit frame within " + std::to_string(timeout_ms) + " ms"};
  if (x.end != Exchange::End::kExited) return Error{"vsock " + uds_path + ": " + x.error};
  return x;
}

}  // namespace ember::stdio
