// ElfLoader: the guest kernel (ember-guest.elf) as the VMM sees it. Parsing
// is a pure function over untrusted bytes (it may be any file the user
// names): every header field, offset and size is checked before use. Loading
// into guest memory is a separate step over an already-validated result.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "api/boot_info.h"
#include "api/guest_layout.h"
#include "base/result.h"
#include "vmm/guest_memory.h"

namespace ember {

struct KernelSegment {
  uint64_t file_offset;
  uint64_t file_size;
  uint64_t paddr;
  uint64_t mem_size;  // >= file_size; the rest is zeroed
};

struct KernelImage {
  uint64_t entry = 0;  // e_entry (informational: Ember enters at note.runtime_entry)
  std::vector<KernelSegment> segments;  // PT_LOAD, sorted by paddr, disjoint
  abi::GuestNote note{};                // the "Ember" note
  std::optional<uint32_t> pvh_entry;    // XEN_ELFNOTE_PHYS32_ENTRY, if present
  uint64_t lowest = 0, highest = 0;     // [lowest, highest): span of all segments
};

struct ElfLimits {
  uint64_t min_paddr = abi::kKernelMin;
  uint64_t max_paddr = abi::kProgramMin;  // segments end at or below this
};

// `name` is used in error messages only ("kernel NAME: ...").
Result<KernelImage> parse_kernel_elf(std::span<const uint8_t> file, const std::string& name,
                                     const ElfLimits& limits = {});

// Copies each segment into RAM and zeroes its bss (unless `memory_is_zero`:
// fresh anonymous RAM is zero already, and touching it costs page faults).
// `file` must be the bytes that were parsed.
Result<void> load_kernel(const KernelImage& kernel, std::span<const uint8_t> file, const GuestMemory& memory,
                         bool memory_is_zero = false);

}  // namespace ember
