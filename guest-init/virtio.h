// Virtio 1.x split virtqueues over virtio-mmio version 2, driver side.
// Queue memory is at api/guest_layout.h queue_gpa(device, queue); the host is
// never trusted: every id and length it writes into a used ring is checked.
#pragma once

#include <stdint.h>

#include "api/virtio.h"
#include "guest-init/klib.h"

namespace ember::guest {

class Virtqueue {
 public:
  // `mem` = queue_gpa(device, queue); `notify` = the device's QueueNotify
  // register (an ioeventfd under ember-vmm: no exit).
  void attach(uint64_t mem, uint16_t size, uint64_t notify, uint16_t index);
  bool attached() const { return desc_ != nullptr; }
  uint16_t size() const { return size_; }

  void set_desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags);
  void set_len(uint16_t i, uint32_t len) { desc_[i].len = len; }
  // Adds descriptor i to the avail ring (not yet visible to the device).
  void push(uint16_t i);
  // Makes pushed descriptors visible to the device.
  void publish();
  // Tells the device to look (QueueNotify).
  void notify();
  void publish_and_notify() {
    publish();
    notify();
  }
  // The next used element, if any.
  bool pop_used(uint32_t* id, uint32_t* len);
  bool has_used() const { return used_idx() != last_used_; }
  // Write-touches the descriptor table, avail and used ring pages (restore
  // warm-up, vsock.h).
  void touch_pages() {
    touch_for_write(desc_);
    touch_for_write(avail_);
    touch_for_write(used_);
  }
  // The descriptor id the device will return next if it returns buffers in
  // the order they were made available, `ahead` places further on.
  uint16_t next_avail_id(uint16_t ahead) const {
    return reinterpret_cast<const volatile uint16_t*>(avail_ + 4)[static_cast<uint16_t>(last_used_ + ahead) % size_];
  }
  // Interrupts for this queue's used buffers on or off (VRING_AVAIL_F_NO_INTERRUPT);
  // for waits on several queues at once (Platform::wait_wake).
  void interrupts(bool on) { *avail_flags() = on ? 0 : abi::kVirtqAvailFNoInterrupt; }
  // Waits until the device has returned a buffer. Interrupts are enabled on
  // this queue only while waiting.
  void wait_used();
  // One wait: returns when a buffer came back, at TSC `deadline`, or on
  // any other wake-up (callers re-check).
  void wait_used_until(uint64_t tsc_deadline);

 private:
  uint16_t used_idx() const { return *used_idx_ptr(); }
  const volatile uint16_t* used_idx_ptr() const { return reinterpret_cast<const volatile uint16_t*>(used_ + 2); }
  volatile uint16_t* avail_flags() { return reinterpret_cast<volatile uint16_t*>(avail_); }

  volatile abi::VirtqDesc* desc_ = nullptr;
  volatile uint8_t* avail_ = nullptr;
  volatile uint8_t* used_ = nullptr;
  volatile uint32_t* notify_ = nullptr;
  uint16_t size_ = 0;
  uint16_t index_ = 0;
  uint16_t avail_idx_ = 0;
  uint16_t last_used_ = 0;
  bool flags_set_ = false;
};

// The standard virtio-mmio initialisation (virtio spec 4.2.3.1), for VMMs
// that do not pre-configure devices: reset, ACKNOWLEDGE, DRIVER, features
// (VIRTIO_F_VERSION_1 only), FEATURES_OK, each queue at `queue_mem[i]`,
// DRIVER_OK. Returns false if the device refuses; `sizes` gets each queue's
// size (min of kQueueSize and the device's maximum).
bool virtio_mmio_init(uint64_t regs, uint32_t queue_count, const uint64_t* queue_mem, uint16_t* sizes);

// The device-id register of a virtio-mmio window, or 0 if it is not a
// version-2 virtio-mmio device.
uint32_t virtio_mmio_probe(uint64_t regs);

}  // namespace ember::guest
