#include "guest-init/platform.h"

#include "api/control.h"
#include "api/guest_layout.h"
#include "api/stdio_protocol.h"
#include "guest-init/stdio.h"

namespace ember::guest {

constinit Platform g_platform;
constinit Stats g_stats;

namespace {
constinit abi::LogRecord g_log_record;
}

bool Platform::init(const abi::BootInfo* info) {
  if (info->magic != abi::kBootInfoMagic || info->version != abi::kBootInfoVersion) return false;
  info_ = info;
  if (info->flags & abi::kBootHasControl) control_ = info->control_gpa;
  static constexpr char kTrace[] = "ember.trace";
  for (size_t i = 0; i + sizeof kTrace - 1 <= sizeof info->cmdline && info->cmdline[i]; i++)
    if (memcmp(info->cmdline + i, kTrace, sizeof kTrace - 1) == 0) trace_ = true;
  return true;
}

void Platform::control_write32(uint32_t reg, uint32_t value) {
  *reinterpret_cast<volatile uint32_t*>(control_ + reg) = value;
}

void Platform::log(LogLevel level, const TextBuf& text) {
  if (!control_) return;
  uint32_t n = text.size() < abi::kLogMax ? static_cast<uint32_t>(text.size()) : abi::kLogMax;
  memcpy(g_log_record.text, text.data(), n);
  g_log_record.length = n;
  g_log_record.level = static_cast<uint32_t>(level);
  compiler_barrier();
  *reinterpret_cast<volatile uint64_t*>(control_ + abi::kControlLog) = reinterpret_cast<uint64_t>(&g_log_record);
}

void Platform::log_trace(const char* how, uint32_t value) {
  if (!trace_) return;
  const uint64_t now = rdtsc();
  const uint64_t khz = info_->tsc_khz ? info_->tsc_khz : 1;
  auto us = [khz](uint64_t ticks) { return ticks * 1000 / khz; };
  char line[256];
  TextBuf t(line, sizeof line);
  t.str("trace: ").str(how).ch(' ').udec(value).str(": boot_tsc->runtime ").udec(us(g_stats.tsc_runtime_start - info_->boot_tsc))
      .str(" us, runtime->program ").udec(us(g_stats.tsc_program_start - g_stats.tsc_runtime_start))
      .str(" us, program ").udec(us(now - g_stats.tsc_program_start)).str(" us, syscalls ").udec(g_stats.syscalls)
      .str(", gate: waits ").udec(g_stats.gate_waits).str(" other ").udec(g_stats.gate_other);
  log(LogLevel::kInfo, t);
}

void Platform::exit_program(uint32_t status) {
  status &= 0xff;
  log_trace("exit", status);
  // Over vsock, the exit frame must reach the host before the write below
  // ends the VM.
  g_stdio.before_exit(abi::kExitCode, status);
  if (control_) control_write32(abi::kControlExitCode, status);
  if (pvh()) ember_gate_pvh_exit(status);
  for (;;) cpu_relax();  // the VMM ends the VM at the write above
}

void Platform::die_by_signal(uint32_t signal) {
  log_trace("signal", signal);
  g_stdio.before_exit(abi::kExitSignal, signal);
  if (control_) control_write32(abi::kControlExitSignal, signal);
  if (pvh()) ember_gate_pvh_exit(static_cast<uint32_t>(abi::exit_status_for_signal(signal)));
  for (;;) cpu_relax();
}

void Platform::take_seed(uint8_t out[32]) {
  auto* seed = const_cast<volatile uint8_t*>(info_->random_seed);
  for (int i = 0; i < 32; i++) {
    out[i] = seed[i];
    seed[i] = 0;
  }
}

void Platform::signal_ready() {
  if (ready_sent_) return;
  // The flag is in guest memory before the write: a VM restored from a
  // snapshot taken at that write never sends it again.
  ready_sent_ = true;
  compiler_barrier();
  if (control_) control_write32(abi::kControlReady, 1);
}

void Platform::wait_word_until(const volatile uint16_t* word, uint16_t seen, uint64_t deadline) {
  if (timer_ == 0) {
    // LVT timer in TSC-deadline mode, unmasked. The VMM leaves the LVTs
    // masked; the LAPIC page is mapped for ring 3 and KVM's in-kernel APIC
    // takes the write, so this needs no ring-0 instruction. Every vector
    // >= 32 goes to the irq handler (EOI) anyway.
    constexpr uint32_t kLvtTimer = 0x320, kModeTscDeadline = 2u << 17, kTimerVector = 0xef;
    const bool has = !poll_only() && !pvh() && (cpuid(1).ecx & (1u << 24));
    if (has) *reinterpret_cast<volatile uint32_t*>(abi::kLapicGpa + kLvtTimer) = kModeTscDeadline | kTimerVector;
    timer_ = has ? 1 : -1;
  }
  if (timer_ < 0) {
    cpu_relax();
    return;
  }
  g_stats.gate_waits++;
  ember_gate_timed_wait(word, seen, deadline);
}

void Platform::wait_word(const volatile uint16_t* word, uint16_t seen) {
  if (poll_only()) {
    for (int i = 0; i < 64 && *word == seen; i++) cpu_relax();
    return;
  }
  g_stats.gate_waits++;
  ember_gate_wait(word, seen);
}

}  // namespace ember::guest
