// libFuzzer target for emberd's side of the stdio protocol
// (api/stdio_client.cc, api/stdio_frames.cc): the bytes are what a
// guest sends back over its vsock stream, which the guest fully controls.
// Whatever they are, the exchange ends with a verdict (never a hang: the
// peer's end is closed after the bytes), keeps output within its cap, and
// reports an exit status only from a well-formed exit frame.
//
// Input: byte 0 picks the output cap, byte 1 how many of the bytes arrive
// as the handshake's leftover (read with the "OK" line) rather than on the
// socket; the rest is the guest's stream.
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <string>

#include "api/stdio_protocol.h"
#include "api/stdio_client.h"

using ember::Clock;
using ember::stdio::Exchange;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint64_t max_output = 16u << (data[0] % 12);  // 16 B .. 32 KiB
  const size_t leftover_bytes = std::min<size_t>(data[1], size - 2);
  const std::string leftover(reinterpret_cast<const char*>(data + 2), leftover_bytes);
  const uint8_t* stream = data + 2 + leftover_bytes;
  const size_t stream_bytes = std::min<size_t>(size - 2 - leftover_bytes, 128 * 1024);  // fits the socket buffers

  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) abort();
  const int buf = 512 * 1024;
  ::setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  ::setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  for (size_t off = 0; off < stream_bytes;) {
    const ssize_t n = ::write(sv[1], stream + off, stream_bytes - off);
    if (n <= 0) break;  // the rest does not fit: the guest sent less
    off += static_cast<size_t>(n);
  }
  ::shutdown(sv[1], SHUT_WR);

  ember::stdio::Connection c{ember::Fd(sv[0]), leftover, 1, true};
  const Exchange x = ember::stdio::exchange(c, "stdin for the program", Clock::now() + std::chrono::seconds(5), max_output);
  ::close(sv[1]);

  if (x.end == Exchange::End::kTimeout) abort();  // the stream ended: a verdict was due long before
  if (x.out.size() + x.err.size() > max_output) abort();
  if (x.end == Exchange::End::kExited && x.exit_kind != ember::abi::kExitCode && x.exit_kind != ember::abi::kExitSignal)
    abort();
  if ((x.end == Exchange::End::kBroken || x.end == Exchange::End::kTooMuchOutput) && x.error.empty()) abort();
  return 0;
}
