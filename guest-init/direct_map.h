// Read-only program segments mapped straight from the image instead of
// copied. Under PVM every page the guest touches for the first time costs
// a shadow-paging fault (~3 us to read an image page, ~4 us to write a
// fresh RAM page), so copying a 700 KiB glibc text costs ~1.3 ms; mapping
// it costs nothing until the program executes a page, and those pages stay
// shared with every other VM of the function (the image slot is the host's
// page cache).
//
// The 2 MiB identity mapping of each affected region is replaced by a 4 KiB
// page table: RAM identity-mapped as before, the segment's pages read-only
// onto the image. One wait-gate trip (invlpg) per region.
#pragma once

#include <stdint.h>

#include "guest-init/elf_loader.h"

namespace ember::guest {

// Below this many bytes of mappable segments, copying is cheaper than the
// page-table work (measured under PVM: musl hello, 20 KiB of text, boots
// ~80 us slower mapped; glibc hello, 700 KiB, ~800 us faster).
inline constexpr uint64_t kDirectMapMinBytes = 256 * 1024;

// Which segments can be mapped: read-only, no .bss, page-congruent with
// their file bytes, no page shared with another segment; none if they add
// up to less than kDirectMapMinBytes. Pure.
void plan_direct_map(const LoadPlan& plan, uint64_t file_gpa, bool* direct);

// Applies it: writes the page tables, flushes the TLB entries. Segments it
// could not map after all (out of page-table pages) get direct[i] = false.
// Returns the number of pages mapped.
uint64_t apply_direct_map(const LoadPlan& plan, uint64_t file_gpa, bool* direct);

// Whether the program's page at va may be written: RAM below mem_size and
// not one of the read-only pages mapped from the image.
bool program_page_writable(uint64_t va, uint64_t mem_size);

}  // namespace ember::guest
