// VirtioMmioTransport: the virtio-mmio version 2 register window (modern
// only) around one VirtioDevice. It owns the queues and the device's lock:
// the vCPU thread enters through mmio_read/mmio_write, the event loop through
// notify() and locked().
//
// Ember pre-configures its devices (preconfigure()): the transport is put in
// DRIVER_OK with VERSION_1 negotiated and every queue at its fixed place, so
// the guest uses its queues without a single MMIO exit at boot.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "vmm/bus.h"
#include "vmm/log.h"
#include "vmm/virtio_device.h"

namespace ember {

inline constexpr uint64_t kVirtioMmioWindow = 0x1000;

// Plain data, for snapshots.
struct VirtioMmioState {
  uint32_t status = 0;
  uint32_t device_features_sel = 0;
  uint32_t driver_features_sel = 0;
  uint64_t driver_features = 0;
  uint32_t queue_sel = 0;
  uint32_t interrupt_status = 0;
  std::vector<VirtqueueState> queues;
};

class VirtioMmioTransport : public MmioDevice, private VirtioInterrupt {
 public:
  // `raise_irq` signals the guest (an irqfd write); `log` may be null.
  VirtioMmioTransport(std::unique_ptr<VirtioDevice> device, const GuestMemory& memory,
                      std::function<void()> raise_irq, const Log* log = nullptr);

  // Where QueueNotify writes that reach the VMM (no ioeventfd) go; by
  // default the queue is processed inline on the calling thread.
  void set_notify_hook(std::function<void(uint32_t queue)> hook) { notify_hook_ = std::move(hook); }
  // Where the device work a Status write asks for (a reset, an activation)
  // goes. By default it runs inline; with a hook, the register file changes
  // at once and the hook is called (under the lock: it must only signal) so
  // that the event loop runs the work with run_device_work(). A guest can
  // write Status at any time, and the device's reset and activation close
  // fds, change epoll interest and timers: calls the vCPU thread's seccomp
  // filter forbids. Every other entry into the device runs the pending work
  // first, so the device never sees the guest out of order.
  void set_device_work_hook(std::function<void()> hook) { device_work_hook_ = std::move(hook); }
  void run_device_work();

  // ACKNOWLEDGE|DRIVER|FEATURES_OK|DRIVER_OK with VIRTIO_F_VERSION_1, every
  // queue `size` entries at queue_gpa(i) (+0 / +avail_off / +used_off).
  Result<void> preconfigure(std::function<uint64_t(uint32_t queue)> queue_gpa, uint16_t size, uint64_t avail_off,
                            uint64_t used_off);

  void mmio_read(uint64_t offset, std::span<uint8_t> data) override;
  void mmio_write(uint64_t offset, std::span<const uint8_t> data) override;

  // Queue `q` was notified (ioeventfd): process it under the lock.
  void notify(uint32_t q);
  // Runs f(device) under the device lock (for event-loop work that is not a
  // queue notification, e.g. console input).
  template <typename F>
  auto locked(F&& f) {
    std::lock_guard<std::mutex> g(mutex_);
    run_device_work_locked();
    return f(*device_);
  }

  VirtioDevice& device() { return *device_; }
  uint32_t status() const;
  bool needs_reset() const { return (status() & abi::kVirtioStatusNeedsReset) != 0; }
  VirtioMmioState save() const;
  // Puts the register file and the queues back as `state` says (snapshot
  // restore, reset in place): the device is reset first (its own state is
  // the caller's to restore, before this call), then, if the state is
  // DRIVER_OK, every ready queue is activated at its saved place with its
  // saved indices and the device is activated. A queue that does not fit
  // guest memory, or a device that refuses, is an error.
  Result<void> restore(const VirtioMmioState& state);

 private:
  void raise(uint32_t bits) override;  // VirtioInterrupt
  void needs_reset(const std::string& why) override { mark_broken_locked(why); }
  uint32_t read_register(uint32_t offset);
  void write_register(uint32_t offset, uint32_t value);
  void write_status(uint32_t value);
  void activate_locked();
  void mark_broken_locked(const std::string& why);
  void reset_locked();  // device, queues and registers, now
  void reset_registers_locked();
  void run_device_work_locked();
  void hand_off_device_work_locked();  // to the hook, or now where there is none
  void notify_locked(uint32_t q);
  uint64_t offered_features() const { return device_->device_features() | abi::kVirtioFVersion1; }

  mutable std::mutex mutex_;
  std::unique_ptr<VirtioDevice> device_;
  const GuestMemory& memory_;
  std::function<void()> raise_irq_;
  std::function<void(uint32_t)> notify_hook_;
  std::function<void()> device_work_hook_;
  bool pending_reset_ = false;     // the device and its queues still await a reset
  bool pending_activate_ = false;  // ... then an activation
  const Log* log_;

  uint32_t status_ = 0;
  uint32_t device_features_sel_ = 0;
  uint32_t driver_features_sel_ = 0;
  uint64_t driver_features_ = 0;
  uint32_t queue_sel_ = 0;
  uint32_t interrupt_status_ = 0;
  std::vector<VirtqueueConfig> queue_config_;
  std::vector<bool> queue_ready_;
  std::vector<Virtqueue> queues_;
};

}  // namespace ember
