#include "guest-init/console.h"

#include "api/boot_info.h"
#include "api/guest_layout.h"
#include "guest-init/klib.h"
#include "guest-init/platform.h"
#include "guest-init/runtime.h"

namespace ember::guest {

constinit Consoles g_consoles;

namespace {
// Buffer pools in the kernel's .bss: fresh zero pages the VMM never had to
// copy; a page is touched only once its buffer is first used.
alignas(4096) uint8_t g_out_pool[ConsoleOut::kBuffers][ConsoleOut::kBufferSize];
alignas(4096) uint8_t g_err_pool[ConsoleOut::kBuffers][ConsoleOut::kBufferSize];
alignas(4096) uint8_t g_in_pool[ConsoleIn::kBuffers][ConsoleIn::kBufferSize];

constexpr uint32_t kReceiveq = 0, kTransmitq = 1;
}  // namespace

// ---------------------------------------------------------------- output

void ConsoleOut::attach(uint64_t queue_mem, uint16_t size, uint64_t notify, uint8_t (*pool)[kBufferSize]) {
  q_.attach(queue_mem, size, notify, kTransmitq);
  pool_ = pool;
  count_ = size < kBuffers ? size : kBuffers;
  free_mask_ = (1u << count_) - 1;
}

void ConsoleOut::reclaim() {
  uint32_t id, len;
  while (q_.pop_used(&id, &len)) {
    // Only buffers we gave away come back; anything else is the host's bug.
    if (id < count_) free_mask_ |= 1u << id;
  }
}

void ConsoleOut::append(const uint8_t* data, uint64_t n) {
  while (n) {
    if (free_mask_ == 0) {
      flush();
      reclaim();
      while (free_mask_ == 0) {
        q_.wait_used();
        reclaim();
      }
    }
    uint16_t id = static_cast<uint16_t>(lowest_bit(free_mask_));
    free_mask_ &= ~(1u << id);
    uint32_t len = n < kBufferSize ? static_cast<uint32_t>(n) : kBufferSize;
    memcpy(pool_[id], data, len);
    q_.set_desc(id, reinterpret_cast<uint64_t>(pool_[id]), len, 0);
    q_.push(id);
    pending_ = true;
    data += len, n -= len;
  }
}

void ConsoleOut::flush() {
  if (!pending_) return;
  pending_ = false;
  q_.publish_and_notify();
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
    q_.set_desc(i, reinterpret_cast<uint64_t>(pool_[i]), kBufferSize, kDescFlagWrite);
    q_.push(i);
    posted_mask_ |= 1u << i;
  }
  q_.publish_and_notify();
}

void ConsoleIn::repost(uint16_t id) {
  q_.set_desc(id, reinterpret_cast<uint64_t>(pool_[id]), kBufferSize, kDescFlagWrite);
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
    g_platform.signal_ready();
    q_.wait_used();
  }
  return static_cast<int64_t>(done);
}

void ConsoleIn::wait_readable(uint64_t deadline_ns) {
  while (!readable()) {
    if (deadline_ns == ~0ull) {
      g_platform.signal_ready();
      q_.wait_used();
    } else {
      if (g_rt.clock.monotonic_ns() >= deadline_ns) return;
      cpu_relax();
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
    uint64_t notify = dev.gpa + kMmioQueueNotify;
    if (dev.role == abi::kRoleStdio) {
      in_.attach(mem[kReceiveq], sizes[kReceiveq], notify, g_in_pool);
      out_.attach(mem[kTransmitq], sizes[kTransmitq], notify, g_out_pool);
    } else {
      err_.attach(mem[kTransmitq], sizes[kTransmitq], notify, g_err_pool);
    }
  }
}

void Consoles::append(uint32_t stream, const uint8_t* data, uint64_t n) {
  ConsoleOut& o = (stream == 2 && err_.attached()) ? err_ : out_;
  if (o.attached()) o.append(data, n);
}

void Consoles::flush(uint32_t stream) {
  ConsoleOut& o = (stream == 2 && err_.attached()) ? err_ : out_;
  if (o.attached()) o.flush();
}

}  // namespace ember::guest
