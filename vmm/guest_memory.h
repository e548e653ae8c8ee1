// GuestMemory: the guest-physical address space as the host sees it (RAM and
// the read-only image slot), and the ONLY place where a guest-physical
// address becomes a host pointer. Every translation checks, without
// overflowing, that [gpa, gpa+len) lies inside one region; the guest is
// hostile and any number it hands us may be garbage.
//
// Not thread-safe to mutate (add_*), safe to translate from any thread: the
// region list is fixed before the vCPU starts.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "base/fd.h"
#include "base/result.h"

namespace ember {

class GuestMemory {
 public:
  struct Region {
    uint64_t gpa;
    uint64_t size;
    uint8_t* host;
    bool writable;
    Mapping owner;  // empty when the region wraps caller-owned memory (tests, fuzzers)
  };

  GuestMemory() = default;
  GuestMemory(GuestMemory&&) = default;
  GuestMemory& operator=(GuestMemory&&) = default;

  // RAM at GPA 0: MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE, so untouched pages
  // cost nothing.
  // huge_pages: 2 MiB-aligned and MADV_HUGEPAGE (MachineConfig::huge_pages).
  static Result<GuestMemory> create(uint64_t ram_size, bool huge_pages = false);

  // Adds a region backed by `mapping` (ownership taken) at `gpa`, `size`
  // bytes visible (<= mapping size). Rejects overlaps.
  Result<void> add_region(uint64_t gpa, uint64_t size, Mapping mapping, bool writable);
  // Adds a region over caller-owned memory that must outlive this object.
  Result<void> add_borrowed(uint64_t gpa, std::span<uint8_t> host, bool writable);

  uint64_t ram_size() const { return regions_.empty() ? 0 : regions_[0].size; }
  uint8_t* ram() const { return regions_.empty() ? nullptr : regions_[0].host; }
  const std::vector<Region>& regions() const { return regions_; }

  // Host view of [gpa, gpa+len) for the device to WRITE into: must lie inside
  // one writable region. len == 0 succeeds with an empty span (nothing can be
  // accessed through it), whatever gpa is.
  Result<std::span<uint8_t>> slice(uint64_t gpa, uint64_t len) const;
  // Host view for the device to READ: any region, read-only slot included.
  Result<std::span<const uint8_t>> const_slice(uint64_t gpa, uint64_t len) const;

  Result<void> read(uint64_t gpa, std::span<uint8_t> out) const;
  Result<void> write(uint64_t gpa, std::span<const uint8_t> in) const;

  template <typename T>
  Result<T> read_obj(uint64_t gpa) const {
    static_assert(std::is_trivially_copyable_v<T>);
    T value;
    auto r = read(gpa, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&value), sizeof(T)));
    if (!r) return r.error();
    return value;
  }
  template <typename T>
  Result<void> write_obj(uint64_t gpa, const T& value) const {
    static_assert(std::is_trivially_copyable_v<T>);
    return write(gpa, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&value), sizeof(T)));
  }

 private:
  // The region containing all of [gpa, gpa+len), len >= 1; nullptr if none.
  const Region* find(uint64_t gpa, uint64_t len) const;
  static std::string range_text(uint64_t gpa, uint64_t len);

  std::vector<Region> regions_;  // sorted by gpa
};

}  // namespace ember
