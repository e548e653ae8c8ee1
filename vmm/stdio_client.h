// The host side of the stdio protocol over vsock (api/stdio_protocol.h), for
// tests, benchmarks and tools: connect to a VM's vsock Unix socket
// (Firecracker's "CONNECT <port>\n" / "OK <hostport>\n"), send stdin as
// frames and its end, collect stdout, stderr and the exit status.
//
// Both directions are served at once (poll), so a program that echoes while
// it reads never deadlocks against a client that is still writing.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "api/stdio_protocol.h"
#include "base/fd.h"
#include "base/result.h"

namespace ember {

struct StdioResult {
  std::string out;
  std::string err;
  uint32_t exit_kind = 0;   // abi::kExitCode or abi::kExitSignal
  uint32_t exit_value = 0;
  // As a shell reports it: the exit code, or 128 + signal.
  int status() const { return exit_kind == abi::kExitSignal ? 128 + static_cast<int>(exit_value & 0x7f) : static_cast<int>(exit_value); }
};

class StdioClient {
 public:
  StdioClient() = default;
  StdioClient(StdioClient&&) = default;
  StdioClient& operator=(StdioClient&&) = default;

  // Connects and waits for the guest to accept. A socket that does not exist
  // yet (the VMM is starting) is retried until the deadline.
  static Result<StdioClient> connect(const std::string& uds_path, int timeout_ms = 10000,
                                     uint32_t port = abi::kStdioPort);
  // Connects and sends the CONNECT line without waiting for the answer:
  // run() then sends stdin right behind it (the VMM keeps those bytes for the
  // guest) and takes the "OK" line before the frames, which saves a round
  // trip. A refusal shows up in run().
  static Result<StdioClient> open(const std::string& uds_path, int timeout_ms = 10000,
                                  uint32_t port = abi::kStdioPort);
  // The host port the VMM picked ("OK <hostport>").
  uint32_t host_port() const { return host_port_; }

  // Sends `input` (frames of up to `chunk` bytes, then kFrameStdinEof) and
  // collects the program's output until its exit frame. Errors: the
  // connection ended without an exit frame, a malformed frame, the deadline.
  Result<StdioResult> run(std::string_view input, int timeout_ms = 30000, size_t chunk = abi::kMaxFramePayload);

 private:
  Fd fd_;
  uint32_t host_port_ = 0;
  bool answered_ = false;  // the "OK <hostport>" line was read
  std::string unsent_;     // open(): the CONNECT line, sent with the first frames
  std::string uds_path_;
};

// open() + run(): one invocation, in as few round trips as the protocol allows.
Result<StdioResult> stdio_invoke(const std::string& uds_path, std::string_view input, int timeout_ms = 30000);

}  // namespace ember
