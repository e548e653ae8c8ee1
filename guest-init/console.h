// The virtio console driver: stdin from the stdio device's receiveq (0),
// stdout to its transmitq (1), stderr to the stderr device's transmitq (1).
//
// Writes are copied into guest-owned buffers (a pool per stream), published
// and notified at once: the guest never waits for the host to consume
// output unless the pool is exhausted, and never at exit (the VMM drains the
// rings when the program exits). Reads keep several receive buffers posted.
#pragma once

#include <stdint.h>

#include "guest-init/virtio.h"

namespace ember::guest {

class ConsoleOut {
 public:
  static constexpr uint16_t kBuffers = 16;
  static constexpr uint32_t kBufferSize = 16384;

  void attach(uint64_t queue_mem, uint16_t size, uint64_t notify, uint8_t (*pool)[kBufferSize]);
  bool attached() const { return q_.attached(); }
  // Copies all of [data, data + n) into buffers; they reach the device at
  // the next flush() (or earlier, when the pool runs dry).
  void append(const uint8_t* data, uint64_t n);
  void flush();

 private:
  void reclaim();
  Virtqueue q_;
  bool pending_ = false;
  uint8_t (*pool_)[kBufferSize] = nullptr;
  uint16_t count_ = 0;
  uint32_t free_mask_ = 0;  // bit i: buffer i is ours
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
  // deadline). Finite deadlines spin (no timer interrupt yet).
  void wait_readable(uint64_t deadline_ns);
  uint64_t buffered() const { return has_cur_ ? cur_len_ - cur_off_ : 0; }

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
  // stream 1 or 2; append() may be called several times before flush().
  void append(uint32_t stream, const uint8_t* data, uint64_t n);
  void flush(uint32_t stream);
  ConsoleIn& in() { return in_; }

 private:
  ConsoleOut out_;
  ConsoleOut err_;
  ConsoleIn in_;
};

extern constinit Consoles g_consoles;

}  // namespace ember::guest
