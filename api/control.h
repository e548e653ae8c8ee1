// The Ember control page: a 4 KiB MMIO window at kControlGpa with which the
// guest reports what virtio has no words for: the program's exit, an
// unhandled exception, a log line. Each write is one exit to the VMM, so the
// guest writes here only at the end of a run (and for rare log lines).
//
// Freestanding: included by the host and by the guest.
#pragma once

#include <stdint.h>

namespace ember::abi {

inline constexpr uint32_t kControlMagicValue = 0x52424d45;  // "EMBR", read at kControlMagic

enum ControlRegister : uint32_t {
  kControlMagic = 0x00,       // read, u32: kControlMagicValue
  kControlExitCode = 0x04,    // write, u32: the program exited with this status (0..255)
  kControlExitSignal = 0x08,  // write, u32: the program was killed by this signal (1..64)
  kControlFault = 0x0c,       // write, u32: ring 0 took exception vector N it cannot handle;
                              // the VMM reads RIP/CR2 from the vCPU and the frame at RSP
  kControlLog = 0x10,         // write, u64: GPA of a LogRecord; the VMM prints it (verbose mode)
  kControlReady = 0x18,       // write, u32: the program first blocked reading stdin (snapshot point)
};

inline constexpr uint32_t kLogMax = 512;
struct LogRecord {
  uint32_t length;  // bytes of text, <= kLogMax; the VMM clamps and checks the range
  uint32_t level;   // 0 debug, 1 info, 2 warning, 3 error
  char text[kLogMax];
};

// Exit status reported to the shell for a signal: 128 + signal, as sh does.
constexpr int exit_status_for_signal(uint32_t signal) { return 128 + static_cast<int>(signal & 0x7f); }

// Signal a program dies of when ring 0 takes an exception it cannot handle.
constexpr uint32_t signal_for_vector(uint32_t vector) {
  switch (vector) {
    case 0:   // #DE
    case 16:  // #MF
    case 19:  // #XM
      return 8;   // SIGFPE
    case 1:
    case 3:
      return 5;   // SIGTRAP
    case 6:
      return 4;   // SIGILL
    case 17:
      return 7;   // SIGBUS (#AC)
    default:
      return 11;  // SIGSEGV: #GP, #PF, #SS, #NP, ...
  }
}

}  // namespace ember::abi
