#include "vmm/bus.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>

namespace ember {

namespace {
std::string range_text(uint64_t base, uint64_t size) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "[0x%" PRIx64 ", 0x%" PRIx64 ")", base, base + size);
  return buf;
}
}  // namespace

Result<void> Bus::add(uint64_t base, uint64_t size, MmioDevice* device, std::string name) {
  if (device == nullptr) return Error{"bus: no device for " + name};
  if (size == 0) return Error{"bus: empty range for " + name};
  if (base + size < base) return Error{"bus: range of " + name + " wraps around"};
  for (const Entry& e : entries_)
    if (base < e.base + e.size && e.base < base + size)
      return Error{"bus: " + name + " " + range_text(base, size) + " overlaps " + e.name + " " +
                   range_text(e.base, e.size)};
  entries_.push_back(Entry{base, size, device, std::move(name)});
  std::sort(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) { return a.base < b.base; });
  return Ok();
}

const Bus::Entry* Bus::find(uint64_t addr, uint64_t len) const {
  // Last entry with base <= addr.
  auto it = std::upper_bound(entries_.begin(), entries_.end(), addr,
                             [](uint64_t a, const Entry& e) { return a < e.base; });
  if (it == entries_.begin()) return nullptr;
  --it;
  const uint64_t off = addr - it->base;
  if (off >= it->size || len > it->size - off) return nullptr;
  return &*it;
}

bool Bus::read(uint64_t addr, std::span<uint8_t> data) {
  const Entry* e = data.empty() ? nullptr : find(addr, data.size());
  if (!e) {
    std::fill(data.begin(), data.end(), 0);
    misses_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  e->device->mmio_read(addr - e->base, data);
  return true;
}

bool Bus::write(uint64_t addr, std::span<const uint8_t> data) {
  const Entry* e = data.empty() ? nullptr : find(addr, data.size());
  if (!e) {
    misses_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  e->device->mmio_write(addr - e->base, data);
  return true;
}

}  // namespace ember
