// The program's address space inside identity-mapped RAM: where brk and
// mmap memory come from. Page tables never change: mapping is only handing
// out address ranges. Fresh RAM is zero already and is never touched here
// (the host's memory stays untouched until the program uses it); memory
// that is handed out again after munmap, a brk shrink or MADV_DONTNEED is
// zeroed, exactly the part that may be dirty.
//
//   low            program segments (ELF), then brk (grows up)
//   ...            untouched gap
//   mmap_low       mmap area (allocated top-down, a free list of holes)
//   stack_bottom   the stack reserve (8 MiB); the initial stack at high
//   high           end of the program's RAM
//
// Pure logic on integers: memory is touched only through the zero/copy
// hooks, so it is unit-tested on the host.
#pragma once

#include <stdint.h>

namespace ember::guest {

class AddressSpace {
 public:
  using ZeroFn = void (*)(uint64_t addr, uint64_t len);
  using CopyFn = void (*)(uint64_t dst, uint64_t src, uint64_t len);
  static constexpr uint32_t kMaxHoles = 256;

  // [low, high): the RAM the program may use (page-aligned).
  void init(uint64_t low, uint64_t high, ZeroFn zero, CopyFn copy);
  // After loading the program: brk starts at page_up(program_end); the top
  // `stack_reserve` bytes are the stack. False if they do not fit.
  bool set_layout(uint64_t program_end, uint64_t stack_reserve);

  uint64_t low() const { return low_; }
  uint64_t high() const { return high_; }
  uint64_t stack_bottom() const { return stack_bottom_; }
  uint64_t brk_current() const { return brk_; }
  uint64_t mmap_low() const { return mmap_low_; }

  // brk(2): returns the new break (the old one if `want` is not possible).
  uint64_t brk(uint64_t want);
  // mmap(2) of anonymous memory, anywhere: the address, or 0 if no room.
  uint64_t map(uint64_t len);
  // MAP_FIXED: [addr, addr+len) becomes zeroed, allocated memory. False if
  // the range leaves the program's RAM.
  bool map_fixed(uint64_t addr, uint64_t len);
  // munmap(2). Parts outside the mmap area (program, brk, stack) stay.
  void unmap(uint64_t addr, uint64_t len);
  // mremap(2): the new address, or 0 (ENOMEM).
  uint64_t remap(uint64_t old_addr, uint64_t old_len, uint64_t new_len, bool may_move);
  // MADV_DONTNEED: reads return zero afterwards.
  void discard(uint64_t addr, uint64_t len);
  // True if [addr, addr+len) lies in the program's RAM.
  bool contains(uint64_t addr, uint64_t len) const;
  uint64_t holes() const { return hole_count_; }

 private:
  struct Hole {
    uint64_t start, end;
    bool dirty;  // may hold old data: zero before handing out
  };
  void add_hole(uint64_t start, uint64_t end, bool dirty);
  // Removes [start, end) from the holes, zeroing the dirty parts it hands
  // out (unless zero_dirty is false: the range is being freed again).
  void carve(uint64_t start, uint64_t end, bool zero_dirty = true);
  void zero(uint64_t start, uint64_t end) {
    if (end > start) zero_(start, end - start);
  }

  ZeroFn zero_ = nullptr;
  CopyFn copy_ = nullptr;
  uint64_t low_ = 0, high_ = 0;
  uint64_t brk_start_ = 0, brk_ = 0;
  uint64_t brk_dirty_end_ = 0;  // pages in [page_up(brk_), brk_dirty_end_) were used before
  uint64_t mmap_low_ = 0, stack_bottom_ = 0;
  Hole holes_[kMaxHoles] = {};
  uint32_t hole_count_ = 0;
};

}  // namespace ember::guest
