#include "vmm/guest_memory.h"

#include <sys/mman.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>

namespace ember {

Result<GuestMemory> GuestMemory::create(uint64_t ram_size, bool huge_pages) {
  if (ram_size == 0) return Error{"guest memory: RAM size is 0"};
  // Huge pages need 2 MiB-aligned host addresses: map 2 MiB more and trim.
  constexpr uint64_t kHuge = 2ull << 20;
  const uint64_t extra = huge_pages ? kHuge : 0;
  void* p = ::mmap(nullptr, ram_size + extra, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return errno_error("mmap guest RAM (" + std::to_string(ram_size >> 20) + " MiB)");
  auto* base = static_cast<uint8_t*>(p);
  if (huge_pages) {
    auto* aligned = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(base) + kHuge - 1) & ~(kHuge - 1));
    if (aligned > base) ::munmap(base, static_cast<size_t>(aligned - base));
    const uint64_t tail = extra - static_cast<uint64_t>(aligned - base);
    if (tail) ::munmap(aligned + ram_size, tail);
    base = aligned;
    // EINVAL: this kernel has no transparent huge pages; 4 KiB pages then.
    (void)::madvise(base, ram_size, MADV_HUGEPAGE);
  }
  GuestMemory mem;
  EMBER_TRY_VOID(mem.add_region(0, ram_size, Mapping(base, ram_size), true));
  return mem;
}

Result<void> GuestMemory::add_region(uint64_t gpa, uint64_t size, Mapping mapping, bool writable) {
  if (size == 0 || size > mapping.size()) return Error{"guest memory: bad region size " + range_text(gpa, size)};
  if (gpa + size < gpa) return Error{"guest memory: region wraps around " + range_text(gpa, size)};
  for (const Region& r : regions_)
    if (gpa < r.gpa + r.size && r.gpa < gpa + size)
      return Error{"guest memory: region " + range_text(gpa, size) + " overlaps " + range_text(r.gpa, r.size)};
  uint8_t* host = mapping.bytes();
  regions_.push_back(Region{gpa, size, host, writable, std::move(mapping)});
  std::sort(regions_.begin(), regions_.end(), [](const Region& a, const Region& b) { return a.gpa < b.gpa; });
  return Ok();
}

Result<void> GuestMemory::add_borrowed(uint64_t gpa, std::span<uint8_t> host, bool writable) {
  const uint64_t size = host.size();
  if (size == 0) return Error{"guest memory: empty region"};
  if (gpa + size < gpa) return Error{"guest memory: region wraps around " + range_text(gpa, size)};
  for (const Region& r : regions_)
    if (gpa < r.gpa + r.size && r.gpa < gpa + size)
      return Error{"guest memory: region " + range_text(gpa, size) + " overlaps " + range_text(r.gpa, r.size)};
  regions_.push_back(Region{gpa, size, host.data(), writable, Mapping()});
  std::sort(regions_.begin(), regions_.end(), [](const Region& a, const Region& b) { return a.gpa < b.gpa; });
  return Ok();
}

const GuestMemory::Region* GuestMemory::find(uint64_t gpa, uint64_t len) const {
  for (const Region& r : regions_) {
    // gpa - r.gpa cannot underflow once gpa >= r.gpa; compare lengths, never
    // compute gpa + len (which the guest can make wrap).
    if (gpa < r.gpa) continue;
    const uint64_t off = gpa - r.gpa;
    if (off >= r.size) continue;
    if (len > r.size - off) return nullptr;  // runs past this region's end (regions never merge)
    return &r;
  }
  return nullptr;
}

std::string GuestMemory::range_text(uint64_t gpa, uint64_t len) {
  char buf[64];
  if (gpa + len < gpa)
    std::snprintf(buf, sizeof buf, "[0x%" PRIx64 ", +0x%" PRIx64 ")", gpa, len);
  else
    std::snprintf(buf, sizeof buf, "[0x%" PRIx64 ", 0x%" PRIx64 ")", gpa, gpa + len);
  return buf;
}

Result<std::span<uint8_t>> GuestMemory::slice(uint64_t gpa, uint64_t len) const {
  if (len == 0) return std::span<uint8_t>();
  const Region* r = find(gpa, len);
  if (!r) return Error{"guest range " + range_text(gpa, len) + " is not in guest memory"};
  if (!r->writable) return Error{"guest range " + range_text(gpa, len) + " is read-only"};
  return std::span<uint8_t>(r->host + (gpa - r->gpa), len);
}

Result<std::span<const uint8_t>> GuestMemory::const_slice(uint64_t gpa, uint64_t len) const {
  if (len == 0) return std::span<const uint8_t>();
  const Region* r = find(gpa, len);
  if (!r) return Error{"guest range " + range_text(gpa, len) + " is not in guest memory"};
  return std::span<const uint8_t>(r->host + (gpa - r->gpa), len);
}

Result<void> GuestMemory::read(uint64_t gpa, std::span<uint8_t> out) const {
  EMBER_TRY(auto src, const_slice(gpa, out.size()));
  if (!out.empty()) std::memcpy(out.data(), src.data(), out.size());
  return Ok();
}

Result<void> GuestMemory::write(uint64_t gpa, std::span<const uint8_t> in) const {
  EMBER_TRY(auto dst, slice(gpa, in.size()));
  if (!in.empty()) std::memcpy(dst.data(), in.data(), in.size());
  return Ok();
}

}  // namespace ember
