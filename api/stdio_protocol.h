// The host <-> guest stdio protocol over vsock: how the controller gives a
// program its stdin and gets back its stdout, stderr and exit status.
//
// The guest runtime listens on vsock port kStdioPort. The host connects
// (Firecracker's convention: connect to the VM's Unix socket, send
// "CONNECT 1024\n", read "OK <hostport>\n"), then both sides exchange frames:
// a FrameHeader followed by `length` bytes of payload. One connection is one
// invocation; the guest accepts one connection per run.
//
//   host -> guest: kFrameStdin (data), kFrameStdinEof (no payload)
//   guest -> host: kFrameStdout, kFrameStderr (data), kFrameExit (ExitPayload),
//                  last frame; the guest then stops sending.
//
// Until a connection arrives, a program reading stdin blocks (that first
// block is the "ready" point where template snapshots are taken, reported on
// the control page). Once a stdio connection is accepted, the program's
// stdin/stdout/stderr are the connection's for the rest of the run; the
// console is used only when no connection ever comes (ember-vmm run).
//
// Every field is little-endian. Receivers check length <= kMaxFramePayload
// and the type; anything else ends the connection (the guest: the program
// sees EOF/EPIPE; the host: the invocation fails with a clear error).
//
// Freestanding: included by the host and by the guest.
#pragma once

#include <stdint.h>

namespace ember::abi {

inline constexpr uint32_t kStdioPort = 1024;
inline constexpr uint32_t kDefaultGuestCid = 3;
inline constexpr uint32_t kMaxFramePayload = 64 * 1024;

enum FrameType : uint32_t {
  kFrameStdin = 1,
  kFrameStdinEof = 2,
  kFrameStdout = 3,
  kFrameStderr = 4,
  kFrameExit = 5,
};

struct FrameHeader {
  uint32_t type;    // FrameType
  uint32_t length;  // payload bytes that follow, <= kMaxFramePayload
};
static_assert(sizeof(FrameHeader) == 8);

inline constexpr uint32_t kExitCode = 0;    // ExitPayload.kind: value is the exit status 0..255
inline constexpr uint32_t kExitSignal = 1;  // value is the signal that killed the program

struct ExitPayload {
  uint32_t kind;
  uint32_t value;
};
static_assert(sizeof(ExitPayload) == 8);

}  // namespace ember::abi
