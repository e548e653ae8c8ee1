// A tiny virtio "driver" for tests: lays out a split ring in guest memory and
// makes descriptor chains available, honest or hostile.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "vmm/guest_memory.h"
#include "vmm/virtqueue.h"

namespace ember::testing {

class TestDriver {
 public:
  // Ring at ring_gpa (desc +0, avail +0x1000, used +0x2000), like Ember's.
  TestDriver(const GuestMemory& mem, uint64_t ring_gpa, uint16_t size)
      : mem_(mem), size_(size), desc_(ring_gpa), avail_(ring_gpa + 0x1000), used_(ring_gpa + 0x2000) {}

  VirtqueueConfig config() const { return VirtqueueConfig{size_, desc_, avail_, used_}; }

  void set_desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
    uint8_t d[16];
    std::memcpy(d, &addr, 8);
    std::memcpy(d + 8, &len, 4);
    std::memcpy(d + 12, &flags, 2);
    std::memcpy(d + 14, &next, 2);
    (void)mem_.write(desc_ + 16ull * i, d);
  }
  // Puts `head` in the next avail slot and bumps avail idx by one.
  void make_available(uint16_t head) {
    (void)mem_.write_obj<uint16_t>(avail_ + 4 + 2ull * (avail_idx_ % size_), head);
    avail_idx_++;
    (void)mem_.write_obj<uint16_t>(avail_ + 2, avail_idx_);
  }
  void set_avail_idx(uint16_t idx) {
    avail_idx_ = idx;
    (void)mem_.write_obj<uint16_t>(avail_ + 2, idx);
  }
  void set_avail_flags(uint16_t f) { (void)mem_.write_obj<uint16_t>(avail_, f); }
  uint16_t used_idx() const { return *mem_.read_obj<uint16_t>(used_ + 2); }
  struct Used {
    uint32_t id, len;
  };
  Used used(uint16_t i) const {
    const uint64_t at = used_ + 4 + 8ull * (i % size_);
    return Used{*mem_.read_obj<uint32_t>(at), *mem_.read_obj<uint32_t>(at + 4)};
  }

 private:
  const GuestMemory& mem_;
  uint16_t size_;
  uint64_t desc_, avail_, used_;
  uint16_t avail_idx_ = 0;
};

}  // namespace ember::testing
