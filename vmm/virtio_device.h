// VirtioDevice: what a device type (console, later vsock, block, rng)
// implements; the transport (virtio_mmio.h) owns the register file, the
// queues and the locking, and calls these with its lock held.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "api/virtio.h"
#include "base/result.h"
#include "vmm/guest_memory.h"
#include "vmm/virtqueue.h"

namespace ember {

// How a device signals its driver. The transport implements it; both are
// called with the device lock held.
class VirtioInterrupt {
 public:
  virtual ~VirtioInterrupt() = default;
  virtual void raise(uint32_t status_bits) = 0;
  // The device hit a hostile ring outside process_queue() (e.g. while
  // delivering input): DEVICE_NEEDS_RESET.
  virtual void needs_reset(const std::string& why) = 0;
};

// Everything a device may touch once the driver set DRIVER_OK.
struct VirtioContext {
  const GuestMemory* memory;
  std::span<Virtqueue> queues;
  VirtioInterrupt* interrupt;
};

class VirtioDevice {
 public:
  virtual ~VirtioDevice() = default;

  virtual uint32_t device_id() const = 0;
  // Device-specific feature bits; the transport adds VIRTIO_F_VERSION_1.
  virtual uint64_t device_features() const = 0;
  virtual uint32_t queue_count() const = 0;
  virtual uint16_t queue_max_size() const { return 256; }

  virtual void read_config(uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void write_config(uint64_t, std::span<const uint8_t>) {}

  // The driver set DRIVER_OK; ctx stays valid until reset(). An error puts
  // the device into DEVICE_NEEDS_RESET.
  virtual Result<void> activate(const VirtioContext& ctx, uint64_t driver_features) = 0;
  // Queue `q` was notified. Returns false when the device broke (a hostile
  // ring): the transport sets DEVICE_NEEDS_RESET.
  virtual bool process_queue(uint32_t q) = 0;
  // Back to the state before activate().
  virtual void reset() = 0;
};

}  // namespace ember
