// What the runtime knows about the machine it runs on: the boot info, the
// control page, and the ring-0 services behind the wait gate. Everything
// here runs in ring 3 under PVM (ring 0 on hardware after a syscall).
#pragma once

#include <stdint.h>

#include "api/boot_info.h"
#include "guest-init/klib.h"

extern "C" {
// entry.S: the one int3 site (see nucleus.S for what ring 0 does).
void ember_gate_wait(const volatile uint16_t* word, uint32_t seen);
void ember_gate_set_fs(uint64_t base);
void ember_gate_invlpg(uint64_t address);
void ember_gate_timed_wait(const volatile uint16_t* word, uint32_t seen, uint64_t tsc_deadline);
[[noreturn]] void ember_gate_pvh_exit(uint32_t status);
[[noreturn]] void ember_enter_program(uint64_t entry, uint64_t sp);
uint64_t ember_call_on_stack(uint64_t fn, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t stack_top);
// entry.S: the program's rsp at its last syscall.
extern uint64_t ember_user_rsp;
// nucleus.S: incremented by every interrupt (wait on several sources).
extern volatile uint16_t ember_wake_count;
}

namespace ember::guest {

// Counters for `ember.trace` on the kernel command line: one log line at
// exit with where the time went (read with ember-vmm -v).
struct Stats {
  uint64_t tsc_runtime_start = 0;  // first runtime instruction
  uint64_t tsc_program_start = 0;  // just before jumping to the program
  uint64_t syscalls = 0;
  uint64_t gate_waits = 0;         // ring-0 trips to halt
  uint64_t gate_other = 0;         // ring-0 trips for FS base & co.
};
extern constinit Stats g_stats;

enum class LogLevel : uint32_t { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

class Platform {
 public:
  // Copies what it needs from the boot info; false if it is not one.
  bool init(const abi::BootInfo* info);

  const abi::BootInfo& boot() const { return *info_; }
  bool poll_only() const { return (info_->flags & abi::kBootPollOnly) != 0; }
  bool pvh() const { return (info_->flags & abi::kBootPvh) != 0; }
  bool trace() const { return trace_; }

  // One line to the VMM's log (an MMIO exit: rare events only).
  void log(LogLevel level, const TextBuf& text);
  // The program's end. Neither returns.
  [[noreturn]] void exit_program(uint32_t status);
  [[noreturn]] void die_by_signal(uint32_t signal);
  // The program first blocked reading stdin (once per boot).
  void signal_ready();

  // Sleeps until the u16 at `word` differs from `seen` (or an interrupt
  // arrives: callers re-check). Spins under kBootPollOnly.
  void wait_word(const volatile uint16_t* word, uint16_t seen);
  // The same, but also wakes at TSC value `deadline` (LAPIC TSC-deadline
  // timer) where the machine has one; otherwise returns at once (callers
  // loop, so they spin).
  void wait_word_until(const volatile uint16_t* word, uint16_t seen, uint64_t deadline);

  // Waiting on several sources: read wake_count(), enable the interrupts
  // of every source, look at each one, then wait_wake(value read): it
  // returns at once if any interrupt arrived since the read, else after
  // the next one. Callers re-check everything.
  uint16_t wake_count() const { return ember_wake_count; }
  void wait_wake(uint16_t seen) { wait_word(&ember_wake_count, seen); }
  void wait_wake_until(uint16_t seen, uint64_t tsc_deadline) {
    wait_word_until(&ember_wake_count, seen, tsc_deadline);
  }

  // Restore awareness: the VMM rewrites these boot-info fields when it
  // restores or resets the VM (vCPU stopped), so they are read afresh at
  // every use, never cached.
  uint64_t generation() const { return *reinterpret_cast<const volatile uint64_t*>(&info_->generation); }
  // Copies the boot info's random seed out and wipes it there (nothing
  // later, a snapshot included, holds it).
  void take_seed(uint8_t out[32]);

 private:
  void control_write32(uint32_t reg, uint32_t value);

  const abi::BootInfo* info_ = nullptr;
  uint64_t control_ = 0;
  bool ready_sent_ = false;
  bool trace_ = false;
  int8_t timer_ = 0;  // 0 not yet set up, 1 LAPIC TSC-deadline timer, -1 none
  void log_trace(const char* how, uint32_t value);
};

extern constinit Platform g_platform;

}  // namespace ember::guest
