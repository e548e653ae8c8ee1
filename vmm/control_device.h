// ControlDevice: the Ember control page (api/control.h) at kControlGpa. The
// guest writes here what virtio has no words for: the program's exit status
// or signal, an exception ring 0 could not handle, a log line, "ready".
// Written from the vCPU thread; the outcome is read by the same thread right
// after the MMIO exit, and by the event loop once the vCPU stopped.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

#include "api/control.h"
#include "vmm/bus.h"
#include "vmm/guest_memory.h"
#include "vmm/log.h"

namespace ember {

struct ControlOutcome {
  enum Kind { kExit, kSignal, kFault } kind;
  uint32_t value;  // exit status (0..255), signal number, or exception vector
};

class ControlDevice : public MmioDevice {
 public:
  ControlDevice(const GuestMemory& memory, const Log* log) : memory_(memory), log_(log) {}

  void mmio_read(uint64_t offset, std::span<uint8_t> data) override;
  void mmio_write(uint64_t offset, std::span<const uint8_t> data) override;

  // The first exit/signal/fault the guest reported (later ones are ignored:
  // the VM is ending).
  std::optional<ControlOutcome> outcome() const;
  bool ready() const { return ready_.load(std::memory_order_acquire); }
  // Back to a state of the guest's past (snapshot restore, reset in place):
  // no outcome, `ready` as it was. Only while the vCPU is not running.
  void restore(bool ready) {
    std::lock_guard<std::mutex> g(mutex_);
    outcome_.reset();
    ready_.store(ready, std::memory_order_release);
  }
  uint64_t log_lines() const { return log_lines_.load(std::memory_order_relaxed); }

 private:
  void set_outcome(ControlOutcome o);
  void print_log(uint64_t gpa);

  const GuestMemory& memory_;
  const Log* log_;
  mutable std::mutex mutex_;
  std::optional<ControlOutcome> outcome_;
  std::atomic<bool> ready_{false};
  std::atomic<uint64_t> log_lines_{0};
};

// The shell's view of an outcome: status, or 128 + signal.
int exit_status_for(const ControlOutcome& o);

}  // namespace ember
