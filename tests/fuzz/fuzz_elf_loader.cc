// libFuzzer target for vmm/elf_loader.cc: any file either is refused by
// parse_kernel_elf() or yields segments that lie inside the file and the
// kernel window, sorted and disjoint, with the note's addresses inside them;
// loading such a result into guest memory stays inside its segments.
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <span>

#include "api/guest_layout.h"
#include "vmm/elf_loader.h"
#include "vmm/guest_memory.h"

namespace {

const ember::GuestMemory& memory() {
  // RAM up to the end of the kernel window, created once for the process.
  static ember::GuestMemory* m = [] {
    auto r = ember::GuestMemory::create(ember::abi::kProgramMin);
    if (!r) abort();
    return new ember::GuestMemory(std::move(*r));
  }();
  return *m;
}

bool inside_segment(const ember::KernelImage& k, uint64_t addr, uint64_t len) {
  for (const auto& s : k.segments)
    if (addr >= s.paddr && addr - s.paddr <= s.mem_size && len <= s.mem_size - (addr - s.paddr)) return true;
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> file(data, size);
  auto r = ember::parse_kernel_elf(file, "fuzz");
  if (!r) {
    if (r.message().empty()) abort();
    return 0;
  }
  const ember::KernelImage& k = *r;
  if (k.segments.empty()) abort();
  uint64_t prev_end = 0;
  for (const auto& s : k.segments) {
    if (s.file_size > s.mem_size) abort();
    if (s.file_offset > size || s.file_size > size - s.file_offset) abort();
    if (s.paddr < ember::abi::kKernelMin || s.paddr + s.mem_size > ember::abi::kProgramMin) abort();
    if (s.paddr < prev_end) abort();
    prev_end = s.paddr + s.mem_size;
  }
  if (!inside_segment(k, k.note.runtime_entry, 1) || !inside_segment(k, k.note.fault_handlers, 256)) abort();
  if (k.note.abi_version != ember::abi::kGuestAbiVersion) abort();
  if (!ember::load_kernel(k, file, memory())) abort();
  return 0;
}
