// The framed stdio protocol (api/stdio_protocol.h), the pure part: the
// decoder of the host -> guest byte stream (stdin data, stdin EOF) and the
// byte ring that holds the stream between the vsock device and the program.
// Host unit tests: tests/unit/guest_vsock_test.cc.
#pragma once

#include <stdint.h>

#include "api/stdio_frames.h"

namespace ember::guest {

// Decodes the host's frames (abi::FrameReader). Stdin payload goes to the
// caller's buffer; frame headers are absorbed. Anything but kFrameStdin /
// kFrameStdinEof, a length over kMaxFramePayload or an EOF frame with a
// payload is an error (the connection ends; the program sees EOF). After
// EOF, further bytes are consumed and dropped.
class FrameDecoder {
 public:
  // Decodes from [in, in + n). Writes at most `cap` stdin bytes to `out`
  // (out == nullptr: counts them without copying). Returns the stream bytes
  // consumed; *produced gets the stdin bytes. Stops when the input is used
  // up, `cap` is reached with payload still pending, or on an error.
  uint32_t feed(const uint8_t* in, uint32_t n, uint8_t* out, uint64_t cap, uint64_t* produced);

  bool eof() const { return reader_.ended(); }
  bool error() const { return reader_.error() != abi::FrameError::kNone; }
  // Stdin bytes still owed by the frame being decoded.
  uint32_t payload_left() const { return reader_.payload_left(); }

 private:
  abi::FrameReader reader_{abi::FrameSource::kHost};
};

// A byte ring of a power-of-two size: the stream received from the host,
// appended by the driver and consumed by the decoder. Counters are free
// running u64 (no wrap in practice).
class ByteRing {
 public:
  void attach(uint8_t* mem, uint32_t size) {
    mem_ = mem;
    size_ = size;
    head_ = tail_ = 0;
  }
  uint32_t size() const { return size_; }
  uint32_t used() const { return static_cast<uint32_t>(head_ - tail_); }
  uint32_t room() const { return size_ - used(); }
  // Appends n <= room() bytes.
  void push(const uint8_t* data, uint32_t n);
  // The contiguous readable bytes at the tail.
  const uint8_t* peek(uint32_t* n) const;
  // The readable bytes after the first contiguous piece (the wrapped part).
  const uint8_t* peek_second(uint32_t* n) const;
  void pop(uint32_t n) { tail_ += n; }
  // Where the next push writes.
  uint8_t* head_ptr() const { return mem_ + (head_ & (size_ - 1)); }

 private:
  uint8_t* mem_ = nullptr;
  uint32_t size_ = 0;
  uint64_t head_ = 0;
  uint64_t tail_ = 0;
};

}  // namespace ember::guest
