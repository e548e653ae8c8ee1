// The virtio console driver: stdin from the stdio device's receiveq (0),
// stdout to its transmitq (1), stderr to the stderr device's transmitq (1).
//
// Output: every write is copied into a byte ring owned by the guest, one
// descriptor per contiguous piece, and published at once (the avail index
// moves). Notifying the device is what costs (under PVM an ioeventfd store
// that wakes the VMM's thread measured 8-40 us here), and ember-vmm drains
// every published descriptor when the program ends (exit, signal, fault), so
// with pre-configured devices notifications are rate-limited: the first
// write after a quiet period notifies at once, later ones within
// kNotifyIntervalUs are folded into one notify that happens at the next
// write or syscall after the interval, before the guest blocks, or when half
// the ring is in flight. The guest never waits for the host to consume
// output unless the ring is full, and never at exit. Under other VMMs
// (PVH) every write notifies.
//
// Input: several receive buffers stay posted (from the first read on).
#pragma once

#include <stdint.h>

#include "guest-init/virtio.h"

namespace ember::guest {

class ConsoleOut {
 public:
  static constexpr uint32_t kRingBytes = 256 * 1024;
  static constexpr uint32_t kMaxChunk = 64 * 1024;  // bytes per descriptor
  static constexpr uint16_t kMaxInFlight = 128;     // descriptors
  static constexpr uint64_t kNotifyIntervalUs = 500;

  void attach(uint64_t queue_mem, uint16_t size, uint64_t notify, uint8_t* ring, bool lazy_notify,
              uint64_t notify_interval_ticks);
  bool attached() const { return q_.attached(); }
  // Copies all of [data, data + n) into the ring and publishes it; then
  // commit() decides whether to notify now (several appends, one decision:
  // a writev is one unit).
  void append(const uint8_t* data, uint64_t n);
  void commit();
  // Notifies now if a notification was deferred.
  void flush();
  // Notifies if one was deferred longer than the interval.
  void flush_if_due(uint64_t now_tsc) {
    if (deferred_since_ && now_tsc - deferred_since_ >= interval_) flush();
  }
  bool deferred() const { return deferred_since_ != 0; }

 private:
  void make_room();
  void reclaim();
  Virtqueue q_;
  uint8_t* ring_ = nullptr;
  bool lazy_ = false;
  uint64_t interval_ = 0;        // TSC ticks
  uint64_t last_notify_ = 0;     // TSC of the last notify
  uint64_t deferred_since_ = 0;  // TSC of the first publish not yet notified, 0: none
  uint64_t head_ = 0;            // bytes ever written (ring position = head_ % kRingBytes)
  uint64_t tail_ = 0;            // bytes ever released by the device
  uint16_t slots_ = 0;           // descriptors usable (min(queue size, kMaxInFlight))
  uint16_t free_count_ = 0;
  uint16_t fifo_first_ = 0;      // in-flight descriptors, oldest first
  uint16_t fifo_count_ = 0;
  uint16_t free_ids_[kMaxInFlight] = {};
  uint16_t fifo_[kMaxInFlight] = {};
  uint64_t end_of_[kMaxInFlight] = {};  // head_ after descriptor i's bytes
  bool done_[kMaxInFlight] = {};
};

class ConsoleIn {
 public:
  static constexpr uint16_t kBuffers = 4;
  static constexpr uint32_t kBufferSize = 65536;

  void attach(uint64_t queue_mem, uint16_t size, uint64_t notify, uint8_t (*pool)[kBufferSize]);
  bool attached() const { return q_.attached(); }
  // Like read(2) on a pipe: at least one byte, blocking if none is there;
  // 0 at end of input. `block` false: returns -1 instead of blocking.
  int64_t read(uint8_t* out, uint64_t n, bool block);
  // Bytes readable without blocking (or 1 at end of input: read won't block).
  bool readable();
  bool at_eof() const { return eof_; }
  // Waits until readable() or monotonic time reaches deadline_ns (~0: no
  // deadline).
  void wait_readable(uint64_t deadline_ns);
  uint64_t buffered() const { return has_cur_ ? cur_len_ - cur_off_ : 0; }
  // For waits on several sources (stdio.cc): receive interrupts on/off.
  void interrupts(bool on) {
    if (attached()) q_.interrupts(on);
  }

 private:
  void start();
  bool next_buffer();  // takes the next used buffer into cur_
  void repost(uint16_t id);
  Virtqueue q_;
  uint8_t (*pool_)[kBufferSize] = nullptr;
  bool started_ = false;
  bool eof_ = false;
  bool has_cur_ = false;  // a used buffer is being consumed:
  uint16_t cur_ = 0;      // this one
  uint32_t cur_len_ = 0;
  uint32_t cur_off_ = 0;
  uint16_t count_ = 0;
  uint32_t posted_mask_ = 0;  // bit i: buffer i is the device's
};

// The three standard streams.
class Consoles {
 public:
  // From the boot info's devices: pre-configured or initialised here.
  void init();
  // stream 1 (stdout) or 2 (stderr; stdout if there is no stderr device).
  void append(uint32_t stream, const uint8_t* data, uint64_t n);
  void commit(uint32_t stream);
  // Deferred notifications: all now (before the guest blocks), or those
  // overdue (on every syscall).
  void flush_all();
  void flush_due() {
    if (out_.deferred() || err_.deferred()) flush_due_slow();
  }
  ConsoleIn& in() { return in_; }

 private:
  void flush_due_slow();
  ConsoleOut out_;
  ConsoleOut err_;
  ConsoleIn in_;
};

extern constinit Consoles g_consoles;

}  // namespace ember::guest
