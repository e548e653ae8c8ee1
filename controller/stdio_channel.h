// Talking to a program in a VM: its stdin in, its stdout/stderr and exit
// status out, under a deadline and an output cap.
//
//   vsock (snapshot mechanism): the VM's vsock Unix socket, Firecracker's
//     "CONNECT <port>\n" → "OK <hostport>\n" handshake, then the frames of
//     api/stdio_protocol.h; the exit status arrives as the last frame.
//   pipes (boot mechanism): the VMM's own stdin/stdout/stderr (ember-vmm run
//     connects the program's console to them); the exit status is the VMM's.
//
// Both interleave writing stdin with reading output (poll), so a program that
// answers before it has read all of its input never deadlocks with us.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/fd.h"
#include "base/result.h"

namespace ember::controller {

using Clock = std::chrono::steady_clock;

struct Exchange {
  enum class End {
    kExited,      // the program finished: exit_kind/exit_value valid (vsock), or output EOF (pipes)
    kTimeout,     // the deadline passed first
    kBroken,      // the connection broke or the peer spoke nonsense: `error` says how
    kTooMuchOutput,
  } end = End::kBroken;
  uint32_t exit_kind = 0;   // abi::kExitCode / kExitSignal (vsock only)
  uint32_t exit_value = 0;
  std::string out;
  std::string err;
  std::string error;
  int exit_code() const { return exit_kind == 1 ? 128 + static_cast<int>(exit_value & 0x7f) : static_cast<int>(exit_value); }
};

// Connects to a VM's vsock Unix socket and opens a stream to guest `port`.
// Returns the connected non-blocking socket; `leftover` receives any bytes
// the guest sent right after the handshake line.
Result<Fd> vsock_connect(const std::string& uds_path, uint32_t port, Clock::time_point deadline, std::string* leftover);

// One invocation over a handshaken vsock stream (api/stdio_protocol.h).
Exchange vsock_exchange(int fd, std::string_view input, std::string leftover, Clock::time_point deadline,
                        uint64_t max_output);

// One invocation over pipes: writes `input` then closes `in` (EOF), reads
// `out` and `err` until both reach EOF. The caller owns the exit status.
Exchange pipes_exchange(Fd in, int out, int err, std::string_view input, Clock::time_point deadline, uint64_t max_output);

}  // namespace ember::controller
