// The host side of the stdio protocol over vsock (api/stdio_protocol.h):
// the one client, for emberd, tests, benchmarks and tools.
//
// Connect to a VM's vsock Unix socket, Firecracker's "CONNECT <port>\n" →
// "OK <hostport>\n" handshake, then send stdin as frames and its end while
// collecting stdout, stderr and the exit status (the last frame). Both
// directions are served at once (poll), so a program that answers before it
// has read all of its input never deadlocks with us. Everything the guest
// sends is checked (abi::FrameReader); a hostile guest ends the exchange
// with a clear error, never an unbounded buffer (max_output).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "api/stdio_protocol.h"
#include "base/clock.h"
#include "base/fd.h"
#include "base/result.h"

namespace ember::stdio {

struct Exchange {
  enum class End {
    kExited,         // the program finished: exit_kind/exit_value valid (vsock), or output EOF (pipes)
    kTimeout,        // the deadline passed first
    kBroken,         // the connection broke or the peer spoke nonsense: `error` says how
    kTooMuchOutput,  // more than max_output bytes of stdout and stderr
  } end = End::kBroken;
  uint32_t exit_kind = abi::kExitCode;  // abi::kExitCode / kExitSignal
  uint32_t exit_value = 0;
  std::string out;
  std::string err;
  std::string error;
  // As a shell reports it: the exit code, or 128 + the signal.
  int status() const {
    return exit_kind == abi::kExitSignal ? 128 + static_cast<int>(exit_value & 0x7f) : static_cast<int>(exit_value);
  }
};

struct ConnectOptions {
  uint32_t port = abi::kStdioPort;
  // Retry while the socket does not exist or refuses (the VMM is starting).
  bool wait_for_socket = false;
  // Send the CONNECT line and return without waiting for "OK": exchange()
  // then sends stdin right behind it (the VMM keeps those bytes for the
  // guest) and reads the answer before the frames, which saves a round
  // trip. A refusal shows up in the exchange.
  bool pipelined = false;
};

// A handshaken (or, pipelined, handshaking) stream to a guest port.
struct Connection {
  Fd fd;                  // non-blocking
  std::string leftover;   // bytes the guest sent right after the "OK" line
  uint32_t host_port = 0; // from "OK <hostport>" (0 until answered)
  bool answered = false;  // the "OK" line was read
};

Result<Connection> connect(const std::string& uds_path, Clock::time_point deadline, const ConnectOptions& o = {});

// One invocation over a connection: `input` in frames of at most `chunk`
// bytes, then its end; output until the exit frame.
Exchange exchange(Connection& c, std::string_view input, Clock::time_point deadline, uint64_t max_output,
                  size_t chunk = abi::kMaxFramePayload);

// connect (pipelined, waiting for the socket) + exchange, for tools and
// tests: an error unless the program exited.
Result<Exchange> invoke(const std::string& uds_path, std::string_view input, int timeout_ms,
                        uint64_t max_output = uint64_t{1} << 32);

}  // namespace ember::stdio
