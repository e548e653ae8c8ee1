// Talking to a program in a VM: its stdin in, its stdout/stderr and exit
// status out, under a deadline and an output cap.
//
//   vsock (snapshot mechanism): api/stdio_client.h, the frames of
//     api/stdio_protocol.h; the exit status arrives as the last frame.
//   pipes (boot mechanism): here. The VMM's own stdin/stdout/stderr
//     (ember-vmm run connects the program's console to them); the exit
//     status is the VMM's.
//
// Both interleave writing stdin with reading output (poll), so a program that
// answers before it has read all of its input never deadlocks with us.
#pragma once

#include <cstdint>
#include <string_view>

#include "api/stdio_client.h"
#include "base/clock.h"
#include "base/fd.h"

namespace ember::controller {

using stdio::Exchange;

// One invocation over pipes: writes `input` then closes `in` (EOF), reads
// `out` and `err` until both reach EOF. The caller owns the exit status.
Exchange pipes_exchange(Fd in, int out, int err, std::string_view input, Clock::time_point deadline, uint64_t max_output);

}  // namespace ember::controller
