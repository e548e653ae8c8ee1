#include "vmm/virtqueue.h"

#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstring>

namespace ember {

namespace {

using Desc = abi::VirtqDesc;

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%" PRIx64, v);
  return buf;
}

}  // namespace

Result<void> Virtqueue::activate(const GuestMemory& memory, const VirtqueueConfig& config, uint16_t max_size) {
  reset();
  const uint16_t n = config.size;
  if (n == 0 || n > max_size || (n & (n - 1)) != 0)
    return Error{"queue size " + std::to_string(n) + " (must be a power of two <= " + std::to_string(max_size) + ")"};
  if (config.desc_gpa % 16 || config.avail_gpa % 2 || config.used_gpa % 4)
    return Error{"misaligned ring (desc " + hex(config.desc_gpa) + ", avail " + hex(config.avail_gpa) + ", used " +
                 hex(config.used_gpa) + ")"};
  auto desc = memory.const_slice(config.desc_gpa, uint64_t{16} * n);
  if (!desc) return Error{"descriptor table: " + desc.message()};
  auto avail = memory.const_slice(config.avail_gpa, 6 + uint64_t{2} * n);
  if (!avail) return Error{"available ring: " + avail.message()};
  auto used = memory.slice(config.used_gpa, 6 + uint64_t{8} * n);
  if (!used) return Error{"used ring: " + used.message()};
  memory_ = &memory;
  config_ = config;
  desc_ = *desc;
  avail_ = *avail;
  used_ = *used;
  active_ = true;
  return Ok();
}

void Virtqueue::reset() {
  memory_ = nullptr;
  config_ = {};
  active_ = false;
  desc_ = {};
  avail_ = {};
  used_ = {};
  next_avail_ = next_used_ = published_used_ = 0;
  broken_reason_.clear();
}

uint16_t Virtqueue::load_avail_idx() const {
  // The ring is shared with a guest CPU: an acquire load orders the ring
  // entries (written before idx by the driver) after it.
  return __atomic_load_n(reinterpret_cast<const uint16_t*>(avail_.data() + 2), __ATOMIC_ACQUIRE);
}

Virtqueue::Pop Virtqueue::fail(std::string why) {
  if (broken_reason_.empty()) broken_reason_ = std::move(why);
  return Pop::kBroken;
}

bool Virtqueue::has_available() {
  if (!active_ || broken()) return false;
  const uint16_t pending = static_cast<uint16_t>(load_avail_idx() - next_avail_);
  if (pending > config_.size) {
    fail("available index moved by " + std::to_string(pending) + " (queue size " + std::to_string(config_.size) + ")");
    return false;
  }
  return pending != 0;
}

Virtqueue::Pop Virtqueue::pop(DescriptorChain& out) {
  out.readable.clear();
  out.writable.clear();
  out.readable_bytes = out.writable_bytes = 0;
  if (!active_) return Pop::kEmpty;
  if (broken()) return Pop::kBroken;
  const uint16_t n = config_.size;
  const uint16_t pending = static_cast<uint16_t>(load_avail_idx() - next_avail_);
  if (pending == 0) return Pop::kEmpty;
  if (pending > n)
    return fail("available index moved by " + std::to_string(pending) + " (queue size " + std::to_string(n) + ")");

  uint16_t head;
  std::memcpy(&head, avail_.data() + 4 + 2 * (next_avail_ % n), 2);
  if (head >= n) return fail("available ring entry " + std::to_string(head) + " >= queue size " + std::to_string(n));

  out.head = head;
  uint16_t index = head;
  for (unsigned count = 0;; count++) {
    // A chain longer than the table must contain a loop.
    if (count >= n) return fail("descriptor chain from " + std::to_string(head) + " loops or exceeds the queue size");
    Desc d;
    std::memcpy(&d, desc_.data() + 16 * size_t{index}, sizeof d);  // one copy: the guest may rewrite it meanwhile
    if (d.flags & abi::kVirtqDescFIndirect)
      return fail("indirect descriptor " + std::to_string(index) + " (VIRTIO_F_INDIRECT_DESC not offered)");
    if (d.flags & abi::kVirtqDescFWrite) {
      auto s = memory_->slice(d.addr, d.len);
      if (!s) return fail("descriptor " + std::to_string(index) + ": " + s.message());
      out.writable_bytes += d.len;
      if (!s->empty()) out.writable.push_back(*s);
    } else {
      if (!out.writable.empty() || out.writable_bytes)
        return fail("descriptor " + std::to_string(index) + ": device-readable after device-writable");
      auto s = memory_->const_slice(d.addr, d.len);
      if (!s) return fail("descriptor " + std::to_string(index) + ": " + s.message());
      out.readable_bytes += d.len;
      if (!s->empty()) out.readable.push_back(*s);
    }
    if (out.readable_bytes + out.writable_bytes > kMaxChainBytes)
      return fail("descriptor chain from " + std::to_string(head) + " describes more than 4 GiB");
    if (!(d.flags & abi::kVirtqDescFNext)) break;
    if (d.next >= n) return fail("descriptor " + std::to_string(index) + " links to " + std::to_string(d.next) +
                                 " >= queue size " + std::to_string(n));
    index = d.next;
  }
  next_avail_++;
  return Pop::kChain;
}

void Virtqueue::undo_pop() { next_avail_--; }

void Virtqueue::add_used(uint16_t head, uint32_t len) {
  if (!active_) return;
  uint8_t* elem = used_.data() + 4 + 8 * size_t{static_cast<uint16_t>(next_used_ % config_.size)};
  const uint32_t id = head;
  std::memcpy(elem, &id, 4);
  std::memcpy(elem + 4, &len, 4);
  next_used_++;
}

void Virtqueue::publish_used() {
  if (!active_ || published_used_ == next_used_) return;
  // Release: the elements above become visible before the index.
  __atomic_store_n(reinterpret_cast<uint16_t*>(used_.data() + 2), next_used_, __ATOMIC_RELEASE);
  published_used_ = next_used_;
}

bool Virtqueue::should_interrupt() const {
  if (!active_) return false;
  std::atomic_thread_fence(std::memory_order_seq_cst);
  const uint16_t flags = __atomic_load_n(reinterpret_cast<const uint16_t*>(avail_.data()), __ATOMIC_RELAXED);
  return !(flags & abi::kVirtqAvailFNoInterrupt);
}

VirtqueueState Virtqueue::save() const { return VirtqueueState{config_, next_avail_, next_used_, active_, active_}; }

void Virtqueue::restore_indices(uint16_t next_avail, uint16_t next_used) {
  next_avail_ = next_avail;
  next_used_ = published_used_ = next_used;
}

}  // namespace ember
