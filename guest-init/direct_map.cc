#include "guest-init/direct_map.h"

#include "api/guest_layout.h"
#include "guest-init/klib.h"
#include "guest-init/platform.h"

namespace ember::guest {
namespace {

// Accessed and Dirty preset, as in the boot tables (api/boot_tables.h: why).
constexpr uint64_t kP = 1, kRw = 2, kUs = 4, kA = 0x20, kD = 0x40, kPs = 0x80;
constexpr uint32_t kMaxTables = 8;  // 16 MiB of read-only segments; more is copied
alignas(4096) uint64_t g_tables[kMaxTables][512];
constinit uint64_t g_table_region[kMaxTables] = {};
constinit uint32_t g_tables_used = 0;

uint64_t seg_first_page(const LoadSegment& s) { return page_down(s.vaddr); }
uint64_t seg_end_page(const LoadSegment& s) { return page_up(s.vaddr + s.memsz); }
uint64_t region_of(uint64_t a) { return a & ~(abi::kHugePageSize - 1); }

// The table being built for the 2 MiB region at r, or null.
uint64_t* table_of(uint64_t r) {
  for (uint32_t t = 0; t < g_tables_used; t++)
    if (g_table_region[t] == r) return g_tables[t];
  return nullptr;
}

}  // namespace

void plan_direct_map(const LoadPlan& plan, uint64_t file_gpa, bool* direct) {
  for (uint32_t i = 0; i < plan.segment_count; i++) {
    const LoadSegment& s = plan.segments[i];
    direct[i] = !(s.flags & kPfWrite) && s.filesz == s.memsz && s.filesz > 0 && file_gpa % kPage == 0 &&
                (file_gpa + s.offset) % kPage == s.vaddr % kPage;
    for (uint32_t j = 0; j < plan.segment_count && direct[i]; j++) {
      if (j == i) continue;
      const LoadSegment& o = plan.segments[j];
      if (seg_first_page(o) < seg_end_page(s) && seg_first_page(s) < seg_end_page(o)) direct[i] = false;
    }
  }
  uint64_t total = 0;
  for (uint32_t i = 0; i < plan.segment_count; i++)
    if (direct[i]) total += plan.segments[i].filesz;
  if (total < kDirectMapMinBytes)
    for (uint32_t i = 0; i < plan.segment_count; i++) direct[i] = false;
}

uint64_t apply_direct_map(const LoadPlan& plan, uint64_t file_gpa, bool* direct) {
  auto* pd = reinterpret_cast<volatile uint64_t*>(abi::kPdLowGpa);  // 2 MiB entries for 0-4 GiB
  uint64_t pages = 0;
  // Build the tables (not yet visible to the MMU).
  for (uint32_t i = 0; i < plan.segment_count; i++) {
    if (!direct[i]) continue;
    const LoadSegment& s = plan.segments[i];
    const uint64_t first = seg_first_page(s), end = seg_end_page(s);
    // A segment is either all mapped or all copied: check the pool first.
    uint32_t need = 0;
    for (uint64_t r = region_of(first); r < end; r += abi::kHugePageSize) {
      if (!(pd[r / abi::kHugePageSize] & kPs)) need = kMaxTables + 1;  // not a plain 2 MiB RAM page: leave it
      else if (!table_of(r)) need++;
    }
    if (g_tables_used + need > kMaxTables) {
      direct[i] = false;
      continue;
    }
    for (uint64_t r = region_of(first); r < end; r += abi::kHugePageSize) {
      if (table_of(r)) continue;
      g_table_region[g_tables_used] = r;
      uint64_t* pt = g_tables[g_tables_used++];
      for (uint64_t k = 0; k < 512; k++) pt[k] = (r + k * kPage) | kP | kRw | kUs | kA | kD;  // RAM, as before
    }
    for (uint64_t v = first; v < end; v += kPage) {
      const uint64_t phys = file_gpa + s.offset - (s.vaddr - v);
      table_of(region_of(v))[(v / kPage) % 512] = phys | kP | kUs | kA;  // read-only, onto the image
      pages++;
    }
  }
  // Install them. Nothing has touched these regions yet, but the old 2 MiB
  // translation may still be cached: one invlpg each (a wait-gate trip).
  compiler_barrier();
  for (uint32_t t = 0; t < g_tables_used; t++) {
    const uint64_t r = g_table_region[t];
    if (!(pd[r / abi::kHugePageSize] & kPs)) continue;  // installed by an earlier call
    pd[r / abi::kHugePageSize] = reinterpret_cast<uint64_t>(g_tables[t]) | kP | kRw | kUs | kA;
    g_stats.gate_other++;
    ember_gate_invlpg(r);
  }
  return pages;
}

bool program_page_writable(uint64_t va, uint64_t mem_size) {
  if (va < abi::kProgramMin || va >= mem_size) return false;
  const uint64_t* pt = table_of(region_of(va));
  return !pt || (pt[(va / kPage) % 512] & kRw);
}

}  // namespace ember::guest
