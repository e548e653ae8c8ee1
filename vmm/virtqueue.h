// Virtqueue: the device side of a virtio 1.x split ring living in guest
// memory. The guest is hostile: every index, address, length and chain is
// checked, and anything malformed makes the queue "broken" (the transport
// then sets DEVICE_NEEDS_RESET) instead of crashing or looping the host.
//
// Used from one thread at a time (the device's lock). The guest runs
// concurrently on another CPU: ring indices are read with acquire and
// published with release semantics, descriptors are copied before use.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "api/virtio.h"
#include "base/result.h"
#include "vmm/guest_memory.h"

namespace ember {

struct VirtqueueConfig {
  uint16_t size = 0;  // power of two, 1..max
  uint64_t desc_gpa = 0;
  uint64_t avail_gpa = 0;  // "driver area"
  uint64_t used_gpa = 0;   // "device area"
};

// A popped descriptor chain, translated: device-readable buffers first, then
// device-writable ones (the order the spec requires).
struct DescriptorChain {
  uint16_t head = 0;
  std::vector<std::span<const uint8_t>> readable;
  std::vector<std::span<uint8_t>> writable;
  uint64_t readable_bytes = 0;
  uint64_t writable_bytes = 0;
};

// Plain data, for snapshots: what a queue has consumed and produced.
struct VirtqueueState {
  VirtqueueConfig config;
  uint16_t next_avail = 0;
  uint16_t next_used = 0;
  bool active = false;
  bool ready = false;  // QueueReady as the driver set it (the transport's view)
};

class Virtqueue {
 public:
  // Upper bound on the bytes one chain may describe (the used length is u32).
  static constexpr uint64_t kMaxChainBytes = 0xffffffffull;

  enum class Pop { kEmpty, kChain, kBroken };

  // Validates the ring placement (size, alignment, inside guest RAM) and
  // remembers host views of the three areas. Resets the indices.
  Result<void> activate(const GuestMemory& memory, const VirtqueueConfig& config, uint16_t max_size);
  void reset();

  bool active() const { return active_; }
  bool broken() const { return !broken_reason_.empty(); }
  const std::string& broken_reason() const { return broken_reason_; }
  uint16_t size() const { return config_.size; }

  // Whether the driver has made chains available that were not popped yet
  // (false on a broken queue).
  bool has_available();
  // Pops the next chain into `out` (its vectors are reused).
  Pop pop(DescriptorChain& out);
  // Gives the last popped chain back (no used element was added for it), e.g.
  // when the host had no data after all.
  void undo_pop();

  // Adds a used element; publish_used() makes the added ones visible.
  void add_used(uint16_t head, uint32_t len);
  void publish_used();
  // After publish_used(): whether the driver wants an interrupt (it did not
  // set VRING_AVAIL_F_NO_INTERRUPT). Full fence first, so that a driver that
  // clears the flag and then re-checks the used index cannot miss both.
  bool should_interrupt() const;

  VirtqueueState save() const;
  // Restores indices onto an already-activated queue (snapshot support).
  void restore_indices(uint16_t next_avail, uint16_t next_used);

 private:
  uint16_t load_avail_idx() const;
  Pop fail(std::string why);

  const GuestMemory* memory_ = nullptr;
  VirtqueueConfig config_{};
  bool active_ = false;
  std::span<const uint8_t> desc_;
  std::span<const uint8_t> avail_;
  std::span<uint8_t> used_;
  uint16_t next_avail_ = 0;
  uint16_t next_used_ = 0;
  uint16_t published_used_ = 0;
  std::string broken_reason_;
};

}  // namespace ember
