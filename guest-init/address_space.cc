#include "guest-init/address_space.h"

#include "guest-init/klib.h"

namespace ember::guest {

void AddressSpace::init(uint64_t low, uint64_t high, ZeroFn zero, CopyFn copy) {
  low_ = page_up(low);
  high_ = page_down(high);
  zero_ = zero;
  copy_ = copy;
  brk_start_ = brk_ = brk_dirty_end_ = low_;
  mmap_low_ = stack_bottom_ = high_;
  hole_count_ = 0;
}

bool AddressSpace::set_layout(uint64_t program_end, uint64_t stack_reserve) {
  uint64_t start = page_up(program_end);
  stack_reserve = page_up(stack_reserve);
  if (start < low_ || start > high_ || high_ - start < stack_reserve) return false;
  brk_start_ = brk_ = brk_dirty_end_ = start;
  stack_bottom_ = mmap_low_ = high_ - stack_reserve;
  return true;
}

bool AddressSpace::contains(uint64_t addr, uint64_t len) const {
  uint64_t end;
  return addr >= low_ && !add_overflows(addr, len, &end) && end <= high_;
}

uint64_t AddressSpace::brk(uint64_t want) {
  if (want < brk_start_ || want > mmap_low_) return brk_;
  // Growing over pages an earlier, larger break used: those may be dirty.
  // (The partly used page at the old break keeps its bytes, as on Linux.)
  if (want > brk_) {
    uint64_t from = page_up(brk_), to = page_up(want) < brk_dirty_end_ ? page_up(want) : brk_dirty_end_;
    zero(from, to);
  }
  brk_ = want;
  if (page_up(brk_) > brk_dirty_end_) brk_dirty_end_ = page_up(brk_);
  return brk_;
}

void AddressSpace::add_hole(uint64_t start, uint64_t end, bool dirty) {
  if (end <= start) return;
  // Insert sorted, then merge neighbours of the same kind.
  uint32_t i = 0;
  while (i < hole_count_ && holes_[i].start < start) i++;
  if (hole_count_ == kMaxHoles) {
    // Full: forget the smallest hole (its memory is lost to this run, never
    // handed out twice).
    uint32_t smallest = 0;
    for (uint32_t j = 1; j < hole_count_; j++)
      if (holes_[j].end - holes_[j].start < holes_[smallest].end - holes_[smallest].start) smallest = j;
    if (holes_[smallest].end - holes_[smallest].start < end - start) {
      for (uint32_t j = smallest; j + 1 < hole_count_; j++) holes_[j] = holes_[j + 1];
      hole_count_--;
      if (smallest < i) i--;
    } else {
      return;
    }
  }
  for (uint32_t j = hole_count_; j > i; j--) holes_[j] = holes_[j - 1];
  holes_[i] = Hole{start, end, dirty};
  hole_count_++;
  if (i + 1 < hole_count_ && holes_[i].end == holes_[i + 1].start && holes_[i].dirty == holes_[i + 1].dirty) {
    holes_[i].end = holes_[i + 1].end;
    for (uint32_t j = i + 1; j + 1 < hole_count_; j++) holes_[j] = holes_[j + 1];
    hole_count_--;
  }
  if (i > 0 && holes_[i - 1].end == holes_[i].start && holes_[i - 1].dirty == holes_[i].dirty) {
    holes_[i - 1].end = holes_[i].end;
    for (uint32_t j = i; j + 1 < hole_count_; j++) holes_[j] = holes_[j + 1];
    hole_count_--;
  }
}

void AddressSpace::carve(uint64_t start, uint64_t end, bool zero_dirty) {
  for (uint32_t i = 0; i < hole_count_;) {
    Hole h = holes_[i];
    if (h.end <= start || h.start >= end) {
      i++;
      continue;
    }
    uint64_t cs = h.start > start ? h.start : start, ce = h.end < end ? h.end : end;
    if (h.dirty && zero_dirty) zero(cs, ce);
    // Remove h, put back what is left on either side.
    for (uint32_t j = i; j + 1 < hole_count_; j++) holes_[j] = holes_[j + 1];
    hole_count_--;
    if (h.start < cs) add_hole(h.start, cs, h.dirty);
    if (ce < h.end) add_hole(ce, h.end, h.dirty);
    i = 0;  // the array changed: rescan (holes are few)
  }
}

uint64_t AddressSpace::map(uint64_t len) {
  len = page_up(len);
  if (len == 0) return 0;
  // Best fit among the holes, preferring clean ones; take the top end.
  int best = -1;
  for (uint32_t i = 0; i < hole_count_; i++) {
    uint64_t size = holes_[i].end - holes_[i].start;
    if (size < len) continue;
    if (best < 0) {
      best = static_cast<int>(i);
      continue;
    }
    const Hole& b = holes_[best];
    uint64_t bsize = b.end - b.start;
    if ((b.dirty && !holes_[i].dirty) || (b.dirty == holes_[i].dirty && size < bsize)) best = static_cast<int>(i);
  }
  if (best >= 0) {
    uint64_t addr = holes_[best].end - len;
    carve(addr, addr + len);
    return addr;
  }
  // Grow the mmap area down into the gap above the break.
  uint64_t floor = page_up(brk_);
  if (mmap_low_ - floor < len) return 0;
  uint64_t addr = mmap_low_ - len;
  if (addr < brk_dirty_end_) {  // pages a larger break used before
    zero(addr, brk_dirty_end_ < mmap_low_ ? brk_dirty_end_ : mmap_low_);
    brk_dirty_end_ = addr;
  }
  mmap_low_ = addr;
  return addr;
}

bool AddressSpace::map_fixed(uint64_t addr, uint64_t len) {
  len = page_up(len);
  if (len == 0 || addr % kPage || !contains(addr, len)) return false;
  const uint64_t end = addr + len;
  // Clean (zero) memory: the untouched gap between the break and the mmap
  // area, and the clean holes; carve() zeroes dirty holes. Everything else
  // in the range may hold data and is zeroed. Holes all lie above the gap.
  uint64_t gap_lo = page_up(brk_) > brk_dirty_end_ ? page_up(brk_) : brk_dirty_end_, gap_hi = mmap_low_;
  if (gap_lo > gap_hi) gap_lo = gap_hi;
  uint64_t cur = addr;
  auto skip_clean = [&](uint64_t cs, uint64_t ce) {
    if (ce <= cur || cs >= end) return;
    if (cs > cur) zero(cur, cs < end ? cs : end);
    if (ce > cur) cur = ce;
  };
  skip_clean(gap_lo, gap_hi);
  for (uint32_t i = 0; i < hole_count_; i++) skip_clean(holes_[i].start, holes_[i].end);
  if (cur < end) zero(cur, end);
  carve(addr, end);
  // The part inside the gap joins the mmap area; the gap above it becomes
  // a clean hole.
  if (addr < gap_hi && end > gap_lo) {
    if (end < gap_hi) add_hole(end, gap_hi, false);
    mmap_low_ = addr > gap_lo ? addr : gap_lo;
  }
  return true;
}

void AddressSpace::unmap(uint64_t addr, uint64_t len) {
  uint64_t end = page_up(addr + len);
  addr = page_down(addr);
  if (addr < mmap_low_) addr = mmap_low_;
  if (end > stack_bottom_) end = stack_bottom_;
  if (end <= addr) return;
  // Parts that are holes already (clean ones included) leave first, so no
  // address is listed twice; the whole range comes back as one dirty hole.
  carve(addr, end, false);
  add_hole(addr, end, true);
}

uint64_t AddressSpace::remap(uint64_t old_addr, uint64_t old_len, uint64_t new_len, bool may_move) {
  old_len = page_up(old_len);
  new_len = page_up(new_len);
  if (new_len == 0 || old_addr % kPage) return 0;
  if (new_len <= old_len) {
    unmap(old_addr + new_len, old_len - new_len);
    return old_addr;
  }
  // In place, if the pages right after are a hole.
  uint64_t tail = old_addr + old_len, tail_end = old_addr + new_len;
  for (uint32_t i = 0; i < hole_count_; i++) {
    if (holes_[i].start <= tail && holes_[i].end >= tail_end) {
      carve(tail, tail_end);
      return old_addr;
    }
  }
  if (!may_move) return 0;
  uint64_t fresh = map(new_len);
  if (!fresh) return 0;
  copy_(fresh, old_addr, old_len);
  unmap(old_addr, old_len);
  return fresh;
}

void AddressSpace::discard(uint64_t addr, uint64_t len) {
  uint64_t end = page_up(addr + len);
  addr = page_down(addr);
  if (addr < low_) addr = low_;
  if (end > high_) end = high_;
  // Holes and the untouched gap are zero or get zeroed when handed out.
  if (end > addr) zero(addr, end);
}

}  // namespace ember::guest
