#include "guest-init/virtio.h"

#include "api/guest_layout.h"
#include "guest-init/klib.h"
#include "guest-init/platform.h"

namespace ember::guest {
namespace {

// virtio-mmio v2 registers
constexpr uint32_t kMagic = 0x000, kVersion = 0x004, kDeviceId = 0x008, kDeviceFeatures = 0x010,
                   kDeviceFeaturesSel = 0x014, kDriverFeatures = 0x020, kDriverFeaturesSel = 0x024,
                   kQueueSel = 0x030, kQueueNumMax = 0x034, kQueueNum = 0x038, kQueueReady = 0x044,
                   kStatus = 0x070, kQueueDescLow = 0x080, kQueueDescHigh = 0x084, kQueueDriverLow = 0x090,
                   kQueueDriverHigh = 0x094, kQueueDeviceLow = 0x0a0, kQueueDeviceHigh = 0x0a4;
constexpr uint32_t kMagicValue = 0x74726976;  // "virt"
constexpr uint32_t kStatusAck = 1, kStatusDriver = 2, kStatusDriverOk = 4, kStatusFeaturesOk = 8;
constexpr uint32_t kFeatureVersion1Hi = 1;  // bit 32

inline uint32_t rd(uint64_t regs, uint32_t off) { return *reinterpret_cast<volatile uint32_t*>(regs + off); }
inline void wr(uint64_t regs, uint32_t off, uint32_t v) { *reinterpret_cast<volatile uint32_t*>(regs + off) = v; }

}  // namespace

void Virtqueue::attach(uint64_t mem, uint16_t size, uint64_t notify, uint16_t index) {
  desc_ = reinterpret_cast<volatile VirtqDesc*>(mem);
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
    *avail_flags() = kAvailFlagNoInterrupt;
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
    *avail_flags() = kAvailFlagNoInterrupt;
  }
}

void Virtqueue::wait_used_until(uint64_t tsc_deadline) {
  if (has_used()) return;
  *avail_flags() = 0;
  full_barrier();
  if (!has_used()) g_platform.wait_word_until(used_idx_ptr(), last_used_, tsc_deadline);
  *avail_flags() = kAvailFlagNoInterrupt;
}

uint32_t virtio_mmio_probe(uint64_t regs) {
  if (rd(regs, kMagic) != kMagicValue || rd(regs, kVersion) != 2) return 0;
  return rd(regs, kDeviceId);
}

bool virtio_mmio_init(uint64_t regs, uint32_t queue_count, const uint64_t* queue_mem, uint16_t* sizes) {
  wr(regs, kStatus, 0);
  wr(regs, kStatus, kStatusAck);
  wr(regs, kStatus, kStatusAck | kStatusDriver);
  wr(regs, kDeviceFeaturesSel, 1);
  if (!(rd(regs, kDeviceFeatures) & kFeatureVersion1Hi)) return false;
  wr(regs, kDriverFeaturesSel, 0);
  wr(regs, kDriverFeatures, 0);
  wr(regs, kDriverFeaturesSel, 1);
  wr(regs, kDriverFeatures, kFeatureVersion1Hi);
  wr(regs, kStatus, kStatusAck | kStatusDriver | kStatusFeaturesOk);
  if (!(rd(regs, kStatus) & kStatusFeaturesOk)) return false;
  for (uint32_t q = 0; q < queue_count; q++) {
    wr(regs, kQueueSel, q);
    if (rd(regs, kQueueReady) != 0) return false;
    uint32_t max = rd(regs, kQueueNumMax);
    if (max == 0) return false;
    uint16_t size = max < abi::kQueueSize ? static_cast<uint16_t>(max) : abi::kQueueSize;
    // Split rings need a power of two.
    while (size & (size - 1)) size &= static_cast<uint16_t>(size - 1);
    sizes[q] = size;
    uint64_t mem = queue_mem[q];
    memset(reinterpret_cast<void*>(mem), 0, abi::kQueueStride);  // our memory, maybe used by firmware before
    wr(regs, kQueueNum, size);
    uint64_t avail = mem + abi::kQueueAvailOffset, used = mem + abi::kQueueUsedOffset;
    wr(regs, kQueueDescLow, static_cast<uint32_t>(mem));
    wr(regs, kQueueDescHigh, static_cast<uint32_t>(mem >> 32));
    wr(regs, kQueueDriverLow, static_cast<uint32_t>(avail));
    wr(regs, kQueueDriverHigh, static_cast<uint32_t>(avail >> 32));
    wr(regs, kQueueDeviceLow, static_cast<uint32_t>(used));
    wr(regs, kQueueDeviceHigh, static_cast<uint32_t>(used >> 32));
    wr(regs, kQueueReady, 1);
  }
  wr(regs, kStatus, kStatusAck | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  return true;
}

}  // namespace ember::guest
