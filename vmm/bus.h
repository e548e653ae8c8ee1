// Bus: MMIO dispatch by address range. Devices see offsets into their own
// window, never absolute addresses. Ranges are fixed before the vCPU runs,
// so lookups need no lock; each device guards its own state.
#pragma once

#include <atomic>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"

namespace ember {

class MmioDevice {
 public:
  virtual ~MmioDevice() = default;
  // `data` is 1, 2, 4 or 8 bytes, little-endian (as KVM hands them over).
  virtual void mmio_read(uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void mmio_write(uint64_t offset, std::span<const uint8_t> data) = 0;
};

class Bus {
 public:
  // Rejects empty or wrapping ranges and overlaps with ranges already added.
  // The device must outlive the bus.
  Result<void> add(uint64_t base, uint64_t size, MmioDevice* device, std::string name = {});

  // Returns false when nothing is mapped at [addr, addr+len) (then reads are
  // zero-filled and writes dropped, and the miss is counted). An access that
  // straddles a device's end is treated as a miss as well.
  bool read(uint64_t addr, std::span<uint8_t> data);
  bool write(uint64_t addr, std::span<const uint8_t> data);

  uint64_t misses() const { return misses_.load(std::memory_order_relaxed); }

  struct Entry {
    uint64_t base;
    uint64_t size;
    MmioDevice* device;
    std::string name;
  };
  const std::vector<Entry>& entries() const { return entries_; }

 private:
  const Entry* find(uint64_t addr, uint64_t len) const;

  std::vector<Entry> entries_;  // sorted by base, disjoint
  std::atomic<uint64_t> misses_{0};
};

}  // namespace ember
