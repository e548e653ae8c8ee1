#include "guest-init/virtio.h"

#include "api/guest_layout.h"
#include "guest-init/klib.h"
#include "guest-init/platform.h"

namespace ember::guest {
namespace {

inline uint32_t rd(uint64_t regs, uint32_t off) { return *reinterpret_cast<volatile uint32_t*>(regs + off); }
inline void wr(uint64_t regs, uint32_t off, uint32_t v) { *reinterpret_cast<volatile uint32_t*>(regs + off) = v; }

}  // namespace

void Virtqueue::attach(uint64_t mem, uint16_t size, uint64_t notify, uint16_t index) {
  desc_ = reinterpret_cast<volatile abi::VirtqDesc*>(mem);
  avail_ = reinterpret_cast<volatile uint8_t*>(mem + abi::kQueueAvailOffset);
  used_ = reinterpret_cast<volatile uint8_t*>(mem + abi::kQueueUsedOffset);
  notify_ = reinterpret_cast<volatile uint32_t*>(notify);
  size_ = size;
  index_ = index;
  // A fresh queue (pre-configured by the VMM, or zeroed by
  // virtio_mmio_init): both indices are 0. Nothing is read or written here,
  // so a queue the program never uses costs no page.
  avail_idx_ = 0;
  last_used_ = 0;
}

void Virtqueue::set_desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags) {
  desc_[i].addr = addr;
  desc_[i].len = len;
  desc_[i].flags = flags;
  desc_[i].next = 0;
}

void Virtqueue::push(uint16_t i) {
  reinterpret_cast<volatile uint16_t*>(avail_ + 4)[avail_idx_ % size_] = i;
  avail_idx_++;
}

void Virtqueue::publish() {
  // Interrupts only while waiting (wait_used); set on first use, the avail
  // page is being written anyway.
  if (!flags_set_) {
    *avail_flags() = abi::kVirtqAvailFNoInterrupt;
    flags_set_ = true;
  }
  // x86 keeps stores in order; the compiler must too: ring entries and
  // descriptors before the index.
  compiler_barrier();
  *reinterpret_cast<volatile uint16_t*>(avail_ + 2) = avail_idx_;
  compiler_barrier();
}

void Virtqueue::notify() { *notify_ = index_; }

bool Virtqueue::pop_used(uint32_t* id, uint32_t* len) {
  if (used_idx() == last_used_) return false;
  compiler_barrier();  // x86 keeps loads in order: the element after the index
  auto elem = reinterpret_cast<volatile uint32_t*>(used_ + 4) + 2 * (last_used_ % size_);
  *id = elem[0];
  *len = elem[1];
  last_used_++;
  return true;
}

void Virtqueue::wait_used() {
  while (!has_used()) {
    *avail_flags() = 0;
    full_barrier();  // the flag must be visible before the last look at the ring
    if (!has_used()) g_platform.wait_word(used_idx_ptr(), last_used_);
    *avail_flags() = abi::kVirtqAvailFNoInterrupt;
  }
}

void Virtqueue::wait_used_until(uint64_t tsc_deadline) {
  if (has_used()) return;
  *avail_flags() = 0;
  full_barrier();
  if (!has_used()) g_platform.wait_word_until(used_idx_ptr(), last_used_, tsc_deadline);
  *avail_flags() = abi::kVirtqAvailFNoInterrupt;
}

uint32_t virtio_mmio_probe(uint64_t regs) {
  if (rd(regs, abi::kMmioMagic) != abi::kVirtioMmioMagic || rd(regs, abi::kMmioVersion) != abi::kVirtioMmioVersion) return 0;
  return rd(regs, abi::kMmioDeviceId);
}

bool virtio_mmio_init(uint64_t regs, uint32_t queue_count, const uint64_t* queue_mem, uint16_t* sizes) {
  wr(regs, abi::kMmioStatus, 0);
  wr(regs, abi::kMmioStatus, abi::kVirtioStatusAcknowledge);
  wr(regs, abi::kMmioStatus, abi::kVirtioStatusAcknowledge | abi::kVirtioStatusDriver);
  wr(regs, abi::kMmioDeviceFeaturesSel, 1);
  if (!(rd(regs, abi::kMmioDeviceFeatures) & static_cast<uint32_t>(abi::kVirtioFVersion1 >> 32))) return false;
  wr(regs, abi::kMmioDriverFeaturesSel, 0);
  wr(regs, abi::kMmioDriverFeatures, 0);
  wr(regs, abi::kMmioDriverFeaturesSel, 1);
  wr(regs, abi::kMmioDriverFeatures, static_cast<uint32_t>(abi::kVirtioFVersion1 >> 32));
  wr(regs, abi::kMmioStatus, abi::kVirtioStatusAcknowledge | abi::kVirtioStatusDriver | abi::kVirtioStatusFeaturesOk);
  if (!(rd(regs, abi::kMmioStatus) & abi::kVirtioStatusFeaturesOk)) return false;
  for (uint32_t q = 0; q < queue_count; q++) {
    wr(regs, abi::kMmioQueueSel, q);
    if (rd(regs, abi::kMmioQueueReady) != 0) return false;
    uint32_t max = rd(regs, abi::kMmioQueueNumMax);
    if (max == 0) return false;
    uint16_t size = max < abi::kQueueSize ? static_cast<uint16_t>(max) : abi::kQueueSize;
    // Split rings need a power of two.
    while (size & (size - 1)) size &= static_cast<uint16_t>(size - 1);
    sizes[q] = size;
    uint64_t mem = queue_mem[q];
    memset(reinterpret_cast<void*>(mem), 0, abi::kQueueStride);  // our memory, maybe used by firmware before
    wr(regs, abi::kMmioQueueNum, size);
    uint64_t avail = mem + abi::kQueueAvailOffset, used = mem + abi::kQueueUsedOffset;
    wr(regs, abi::kMmioQueueDescLow, static_cast<uint32_t>(mem));
    wr(regs, abi::kMmioQueueDescHigh, static_cast<uint32_t>(mem >> 32));
    wr(regs, abi::kMmioQueueDriverLow, static_cast<uint32_t>(avail));
    wr(regs, abi::kMmioQueueDriverHigh, static_cast<uint32_t>(avail >> 32));
    wr(regs, abi::kMmioQueueDeviceLow, static_cast<uint32_t>(used));
    wr(regs, abi::kMmioQueueDeviceHigh, static_cast<uint32_t>(used >> 32));
    wr(regs, abi::kMmioQueueReady, 1);
  }
  wr(regs, abi::kMmioStatus, abi::kVirtioStatusAcknowledge | abi::kVirtioStatusDriver | abi::kVirtioStatusFeaturesOk | abi::kVirtioStatusDriverOk);
  return true;
}

}  // namespace ember::guest
