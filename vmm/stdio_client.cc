#include "vmm/stdio_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

namespace ember {

namespace {

uint64_t now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
}

int left_ms(uint64_t deadline) {
  const uint64_t now = now_ms();
  return now >= deadline ? 0 : static_cast<int>(std::min<uint64_t>(deadline - now, 1u << 30));
}

}  // namespace

Result<StdioClient> StdioClient::open(const std::string& uds_path, int timeout_ms, uint32_t port) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (uds_path.size() >= sizeof addr.sun_path) return Error{"vsock socket path too long: " + uds_path};
  std::memcpy(addr.sun_path, uds_path.data(), uds_path.size());
  const uint64_t deadline = now_ms() + static_cast<uint64_t>(timeout_ms);
  StdioClient c;
  c.uds_path_ = uds_path;
  for (;;) {
    c.fd_ = Fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!c.fd_.valid()) return errno_error("socket");
    if (::connect(c.fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) break;
    if ((errno != ENOENT && errno != ECONNREFUSED && errno != EAGAIN) || left_ms(deadline) == 0)
      return errno_error("connect " + uds_path);
    ::usleep(1000);
  }
  // Sent with the first frames (one write: the VMM reads it all at once).
  c.unsent_ = "CONNECT " + std::to_string(port) + "\n";
  return c;
}

Result<StdioClient> StdioClient::connect(const std::string& uds_path, int timeout_ms, uint32_t port) {
  EMBER_TRY(StdioClient c, open(uds_path, timeout_ms, port));
  if (::send(c.fd_.get(), c.unsent_.data(), c.unsent_.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(c.unsent_.size()))
    return errno_error("send CONNECT");
  c.unsent_.clear();
  const uint64_t deadline = now_ms() + static_cast<uint64_t>(timeout_ms);
  // "OK <port>\n", byte by byte: what follows is the guest's.
  std::string reply;
  while (reply.empty() || reply.back() != '\n') {
    pollfd p{c.fd_.get(), POLLIN, 0};
    const int r = ::poll(&p, 1, left_ms(deadline));
    if (r == 0) return Error{"vsock " + uds_path + ": no answer to CONNECT " + std::to_string(port)};
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno_error("poll");
    char ch;
    const ssize_t n = ::recv(c.fd_.get(), &ch, 1, 0);
    if (n == 0) return Error{"vsock " + uds_path + ": the guest refused the connection to port " + std::to_string(port)};
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("recv");
    reply += ch;
    if (reply.size() > 32) return Error{"vsock " + uds_path + ": bad answer to CONNECT"};
  }
  if (reply.rfind("OK ", 0) != 0) return Error{"vsock " + uds_path + ": bad answer to CONNECT: " + reply};
  c.host_port_ = static_cast<uint32_t>(std::strtoul(reply.c_str() + 3, nullptr, 10));
  c.answered_ = true;
  return c;
}

Result<StdioResult> StdioClient::run(std::string_view input, int timeout_ms, size_t chunk) {
  if (!fd_.valid()) return Error{"not connected"};
  if (chunk == 0 || chunk > abi::kMaxFramePayload) chunk = abi::kMaxFramePayload;
  const uint64_t deadline = now_ms() + static_cast<uint64_t>(timeout_ms);
  StdioResult res;
  // Outgoing: a window of the byte stream (the CONNECT line if not sent
  // yet, stdin frames, the EOF frame), refilled as it drains, so that a
  // small invocation is one write.
  std::vector<uint8_t> out(unsent_.begin(), unsent_.end());
  unsent_.clear();
  size_t out_off = 0, in_off = 0;
  bool eof_queued = false;
  constexpr size_t kWindow = 256 * 1024;
  auto refill = [&] {
    if (out_off == out.size()) {
      out.clear();
      out_off = 0;
    }
    while (out.size() - out_off < kWindow && !eof_queued) {
      const size_t at = out.size();
      if (in_off < input.size()) {
        const size_t n = std::min(chunk, input.size() - in_off);
        const abi::FrameHeader h{abi::kFrameStdin, static_cast<uint32_t>(n)};
        out.resize(at + sizeof h + n);
        std::memcpy(out.data() + at, &h, sizeof h);
        std::memcpy(out.data() + at + sizeof h, input.data() + in_off, n);
        in_off += n;
      } else {
        const abi::FrameHeader h{abi::kFrameStdinEof, 0};
        out.resize(at + sizeof h);
        std::memcpy(out.data() + at, &h, sizeof h);
        eof_queued = true;
      }
    }
  };
  refill();
  // Incoming: bytes of an incomplete frame.
  std::vector<uint8_t> in;
  in.reserve(sizeof(abi::FrameHeader) + abi::kMaxFramePayload);
  std::vector<uint8_t> buf(256 * 1024);
  for (;;) {
    pollfd p{fd_.get(), static_cast<short>(POLLIN | (out_off < out.size() ? POLLOUT : 0)), 0};
    const int r = ::poll(&p, 1, left_ms(deadline));
    if (r == 0) return Error{"vsock: no exit frame within " + std::to_string(timeout_ms) + " ms"};
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno_error("poll");
    if ((p.revents & POLLOUT) && out_off < out.size()) {
      const ssize_t n = ::send(fd_.get(), out.data() + out_off, out.size() - out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        out_off += static_cast<size_t>(n);
        if (out.size() - out_off < kWindow / 2) refill();
      } else if (n < 0 && errno != EAGAIN && errno != EINTR && errno != EPIPE) {
        return errno_error("send");
      }
      // EPIPE: the program stopped reading and the VMM closed our input; the
      // exit frame may still be on its way.
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      const ssize_t n = ::recv(fd_.get(), buf.data(), buf.size(), MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n < 0) return errno_error("recv");
      if (n == 0)
        return Error{answered_ ? "vsock: the connection ended without an exit frame"
                               : "vsock " + uds_path_ + ": the guest refused the connection"};
      in.insert(in.end(), buf.data(), buf.data() + n);
      size_t at = 0;
      if (!answered_) {
        const auto* nl = static_cast<const uint8_t*>(std::memchr(in.data(), '\n', in.size()));
        if (!nl) {
          if (in.size() > 32) return Error{"vsock: bad answer to CONNECT"};
          continue;
        }
        const std::string reply(reinterpret_cast<const char*>(in.data()), static_cast<size_t>(nl - in.data()));
        if (reply.rfind("OK ", 0) != 0) return Error{"vsock: bad answer to CONNECT: " + reply};
        host_port_ = static_cast<uint32_t>(std::strtoul(reply.c_str() + 3, nullptr, 10));
        answered_ = true;
        at = static_cast<size_t>(nl - in.data()) + 1;
      }
      for (;;) {
        if (in.size() - at < sizeof(abi::FrameHeader)) break;
        abi::FrameHeader h;
        std::memcpy(&h, in.data() + at, sizeof h);
        if (h.length > abi::kMaxFramePayload) return Error{"vsock: frame of " + std::to_string(h.length) + " bytes"};
        if (in.size() - at - sizeof h < h.length) break;
        const char* payload = reinterpret_cast<const char*>(in.data() + at + sizeof h);
        switch (h.type) {
          case abi::kFrameStdout: res.out.append(payload, h.length); break;
          case abi::kFrameStderr: res.err.append(payload, h.length); break;
          case abi::kFrameExit: {
            if (h.length != sizeof(abi::ExitPayload)) return Error{"vsock: exit frame of " + std::to_string(h.length) + " bytes"};
            abi::ExitPayload e;
            std::memcpy(&e, payload, sizeof e);
            if (e.kind != abi::kExitCode && e.kind != abi::kExitSignal) return Error{"vsock: bad exit kind"};
            res.exit_kind = e.kind;
            res.exit_value = e.value;
            if (in.size() - at - sizeof h - h.length) return Error{"vsock: bytes after the exit frame"};
            return res;
          }
          default: return Error{"vsock: unknown frame type " + std::to_string(h.type)};
        }
        at += sizeof h + h.length;
      }
      in.erase(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(at));
    }
  }
}

Result<StdioResult> stdio_invoke(const std::string& uds_path, std::string_view input, int timeout_ms) {
  EMBER_TRY(StdioClient c, StdioClient::open(uds_path, timeout_ms));
  return c.run(input, timeout_ms);
}

}  // namespace ember
