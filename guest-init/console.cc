#include "guest-init/console.h"

#include "api/boot_info.h"
#include "api/guest_layout.h"
#include "guest-init/klib.h"
#include "guest-init/platform.h"
#include "guest-init/runtime.h"

namespace ember::guest {

constinit Consoles g_consoles;

namespace {
// Buffers in the kernel's .bss: fresh zero pages the VMM never had to copy;
// a page is touched only once the ring reaches it.
alignas(4096) uint8_t g_out_ring[ConsoleOut::kRingBytes];
alignas(4096) uint8_t g_err_ring[ConsoleOut::kRingBytes];
alignas(4096) uint8_t g_in_pool[ConsoleIn::kBuffers][ConsoleIn::kBufferSize];

constexpr uint32_t kReceiveq = 0, kTransmitq = 1;
}  // namespace

// ---------------------------------------------------------------- output

void ConsoleOut::attach(uint64_t queue_mem, uint16_t size, uint64_t notify, uint8_t* ring, bool lazy_notify,
                        uint64_t notify_interval_ticks) {
  q_.attach(queue_mem, size, notify, kTransmitq);
  ring_ = ring;
  lazy_ = lazy_notify;
  interval_ = notify_interval_ticks;
  slots_ = size < kMaxInFlight ? size : kMaxInFlight;
  for (uint16_t i = 0; i < slots_; i++) free_ids_[i] = static_cast<uint16_t>(slots_ - 1 - i);
  free_count_ = slots_;
}

void ConsoleOut::reclaim() {
  uint32_t id, len;
  while (q_.pop_used(&id, &len)) {
    // Only descriptors in flight come back; anything else is the host's bug.
    if (id < slots_) done_[id] = true;
  }
  // Space is released in ring order (the device may complete out of order).
  while (fifo_count_ && done_[fifo_[fifo_first_]]) {
    const uint16_t id = fifo_[fifo_first_];
    done_[id] = false;
    tail_ = end_of_[id];
    free_ids_[free_count_++] = id;
    fifo_first_ = static_cast<uint16_t>((fifo_first_ + 1) % kMaxInFlight);
    fifo_count_--;
  }
}

void ConsoleOut::flush() {
  if (!deferred_since_) return;
  deferred_since_ = 0;
  last_notify_ = rdtsc();
  q_.notify();
}

void ConsoleOut::make_room() {
  flush();  // the device must know about what fills the ring
  reclaim();
  while (free_count_ == 0 || head_ - tail_ == kRingBytes) {
    q_.wait_used();
    reclaim();
  }
}

void ConsoleOut::append(const uint8_t* data, uint64_t n) {
  bool published = false;
  while (n) {
    const uint64_t pos = head_ % kRingBytes;
    const uint64_t room = kRingBytes - (head_ - tail_);
    uint64_t len = kRingBytes - pos;  // contiguous to the end of the ring
    if (room < len) len = room;
    if (len == 0 || free_count_ == 0) {
      if (published) q_.publish(), published = false, deferred_since_ = deferred_since_ ? deferred_since_ : rdtsc();
      make_room();
      continue;
    }
    if (len > n) len = n;
    if (len > kMaxChunk) len = kMaxChunk;
    memcpy(ring_ + pos, data, len);
    const uint16_t id = free_ids_[--free_count_];
    q_.set_desc(id, reinterpret_cast<uint64_t>(ring_ + pos), static_cast<uint32_t>(len), 0);
    q_.push(id);
    head_ += len;
    end_of_[id] = head_;
    fifo_[(fifo_first_ + fifo_count_) % kMaxInFlight] = id;
    fifo_count_++;
    published = true;
    data += len, n -= len;
  }
  if (!published) return;
  q_.publish();
  if (!deferred_since_) deferred_since_ = rdtsc();
}

void ConsoleOut::commit() {
  if (!deferred_since_) return;
  reclaim();  // what the device finished no longer counts as in flight
  const uint64_t now = rdtsc();
  // Notify now: eager mode; after a quiet period; when the deferral is
  // overdue; when half the ring or the descriptors are in flight.
  if (!lazy_ || now - last_notify_ >= interval_ || now - deferred_since_ >= interval_ ||
      head_ - tail_ >= kRingBytes / 2 || fifo_count_ >= slots_ / 2)
    flush();
}

// ---------------------------------------------------------------- input

void ConsoleIn::attach(uint64_t queue_mem, uint16_t size, uint64_t notify, uint8_t (*pool)[kBufferSize]) {
  q_.attach(queue_mem, size, notify, kReceiveq);
  pool_ = pool;
  count_ = size < kBuffers ? size : kBuffers;
}

void ConsoleIn::start() {
  // Buffers are posted at the first read, not at boot: a program that never
  // reads stdin costs no receive pages.
  started_ = true;
  for (uint16_t i = 0; i < count_; i++) {
    q_.set_desc(i, reinterpret_cast<uint64_t>(pool_[i]), kBufferSize, abi::kVirtqDescFWrite);
    q_.push(i);
    posted_mask_ |= 1u << i;
  }
  q_.publish_and_notify();
}

void ConsoleIn::repost(uint16_t id) {
  q_.set_desc(id, reinterpret_cast<uint64_t>(pool_[id]), kBufferSize, abi::kVirtqDescFWrite);
  q_.push(id);
  posted_mask_ |= 1u << id;
  q_.publish_and_notify();
}

bool ConsoleIn::next_buffer() {
  uint32_t id, len;
  while (q_.pop_used(&id, &len)) {
    if (id >= count_ || !(posted_mask_ & (1u << id))) continue;  // not ours: ignore
    posted_mask_ &= ~(1u << id);
    if (len == 0) {  // Ember's console convention: end of input
      eof_ = true;
      return false;
    }
    cur_ = static_cast<uint16_t>(id);
    has_cur_ = true;
    cur_len_ = len < kBufferSize ? len : kBufferSize;
    cur_off_ = 0;
    return true;
  }
  return false;
}

bool ConsoleIn::readable() {
  if (!attached() || eof_) return true;
  if (!started_) start();
  if (has_cur_) return true;
  return next_buffer() || eof_;
}

int64_t ConsoleIn::read(uint8_t* out, uint64_t n, bool block) {
  if (!attached()) return 0;  // no stdin device: like /dev/null
  if (!started_) start();
  uint64_t done = 0;
  while (done < n) {
    if (has_cur_) {
      uint64_t avail = cur_len_ - cur_off_;
      uint64_t take = avail < n - done ? avail : n - done;
      memcpy(out + done, pool_[cur_] + cur_off_, take);
      done += take;
      cur_off_ += static_cast<uint32_t>(take);
      if (cur_off_ == cur_len_) {
        uint16_t id = cur_;
        has_cur_ = false;
        if (!eof_) repost(id);
      }
      continue;
    }
    if (eof_) break;
    if (next_buffer()) continue;
    if (done || eof_) break;
    if (!block) return -1;
    g_consoles.flush_all();  // whoever feeds stdin may be waiting for our output
    g_platform.signal_ready();
    q_.wait_used();
  }
  return static_cast<int64_t>(done);
}

void ConsoleIn::wait_readable(uint64_t deadline_ns) {
  while (!readable()) {
    g_consoles.flush_all();
    if (deadline_ns == ~0ull) {
      g_platform.signal_ready();
      q_.wait_used();
    } else {
      if (g_rt.clock.monotonic_ns() >= deadline_ns) return;
      q_.wait_used_until(g_rt.clock.tsc_at(deadline_ns));
    }
  }
}

// ---------------------------------------------------------------- devices

void Consoles::init() {
  const abi::BootInfo& bi = g_platform.boot();
  bool preconfigured = bi.flags & abi::kBootPreconfigured;
  uint32_t count = bi.device_count < abi::kMaxDevices ? bi.device_count : abi::kMaxDevices;
  for (uint32_t d = 0; d < count; d++) {
    const abi::VirtioDevice& dev = bi.devices[d];
    if (dev.device_id != abi::kVirtioIdConsole) continue;
    if (dev.role != abi::kRoleStdio && dev.role != abi::kRoleStderr) continue;
    if (dev.role == abi::kRoleStdio && out_.attached()) continue;
    if (dev.role == abi::kRoleStderr && err_.attached()) continue;
    uint64_t mem[2] = {abi::queue_gpa(d, kReceiveq), abi::queue_gpa(d, kTransmitq)};
    uint16_t sizes[2] = {abi::kQueueSize, abi::kQueueSize};
    if (!preconfigured && !virtio_mmio_init(dev.gpa, 2, mem, sizes)) {
      char line[96];
      TextBuf t(line, sizeof line);
      t.str("virtio console at ").hex(dev.gpa).str(" refused initialisation");
      g_platform.log(LogLevel::kWarning, t);
      continue;
    }
    uint64_t notify = dev.gpa + abi::kMmioQueueNotify;
    // Lazy notifications need a VMM that drains published output when the
    // program ends: ember-vmm (which is also the one that pre-configures).
    const bool lazy = preconfigured && (bi.flags & abi::kBootHasControl);
    const uint64_t interval = g_rt.clock.tsc_khz() * ConsoleOut::kNotifyIntervalUs / 1000;
    if (dev.role == abi::kRoleStdio) {
      in_.attach(mem[kReceiveq], sizes[kReceiveq], notify, g_in_pool);
      out_.attach(mem[kTransmitq], sizes[kTransmitq], notify, g_out_ring, lazy, interval);
    } else {
      err_.attach(mem[kTransmitq], sizes[kTransmitq], notify, g_err_ring, lazy, interval);
    }
  }
}

void Consoles::append(uint32_t stream, const uint8_t* data, uint64_t n) {
  ConsoleOut& o = (stream == 2 && err_.attached()) ? err_ : out_;
  if (o.attached()) o.append(data, n);
}

void Consoles::commit(uint32_t stream) {
  ConsoleOut& o = (stream == 2 && err_.attached()) ? err_ : out_;
  if (o.attached()) o.commit();
}

void Consoles::flush_all() {
  out_.flush();
  err_.flush();
}

void Consoles::flush_due_slow() {
  const uint64_t now = rdtsc();
  out_.flush_if_due(now);
  err_.flush_if_due(now);
}

}  // namespace ember::guest
