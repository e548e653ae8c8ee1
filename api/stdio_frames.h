// The one codec of the stdio protocol's frames (api/stdio_protocol.h), for
// both directions and both ends: the guest decodes the host's stream, the
// VMM watches the guest's, the host clients (api/stdio_client.h) decode it.
//
// Freestanding (no libc): compiled into the guest as well as the host.
// Every length and type comes from the other side and is checked here.
#pragma once

#include <stdint.h>

#include "api/stdio_protocol.h"

namespace ember::abi {

// Which end wrote a stream: the frame types it may carry.
enum class FrameSource : uint8_t {
  kHost,   // kFrameStdin, kFrameStdinEof (no payload)
  kGuest,  // kFrameStdout, kFrameStderr, kFrameExit (an ExitPayload)
};

enum class FrameError : uint8_t {
  kNone,
  kTooLong,      // a length over kMaxFramePayload (error_value: the length)
  kUnknownType,  // a type this direction does not carry (error_value: the type)
  kBadLength,    // an end frame of the wrong size (error_value: the length)
  kBadExitKind,  // an exit frame of neither kExitCode nor kExitSignal (error_value: the kind)
};

// Cuts one direction's byte stream into frames, whatever the read
// boundaries. Each next() consumes one piece: header bytes (absorbed) or
// payload (handed back, a frame's payload possibly in several pieces).
// The stream's end is stdin EOF (host) or the exit frame (guest); what
// follows it is consumed and dropped.
class FrameReader {
 public:
  explicit constexpr FrameReader(FrameSource from) : from_(from) {}

  struct Piece {
    uint32_t type = 0;  // the data frame it belongs to; 0: no payload in this piece
    const uint8_t* data = nullptr;
    uint32_t len = 0;
  };
  // Consumes a prefix of [in, in + n), at most `max_payload` payload bytes.
  // Returns the bytes consumed (0 only for n == 0, max_payload == 0 within
  // a payload, or after an error).
  uint32_t next(const uint8_t* in, uint32_t n, uint32_t max_payload, Piece* piece);
  // Follows the frames of [in, in + n) without keeping the payload (the
  // VMM, which only needs to know where frames end).
  void skim(const uint8_t* in, uint64_t n);

  bool ended() const { return ended_; }
  FrameError error() const { return error_; }
  uint32_t error_value() const { return error_value_; }
  // Between frames (no header or payload half read).
  bool at_boundary() const { return hdr_have_ == 0 && payload_left_ == 0; }
  // Payload bytes still owed by the data frame being read.
  uint32_t payload_left() const { return end_frame_ ? 0 : payload_left_; }
  // The guest's exit frame, once ended().
  ExitPayload exit() const { return exit_; }

 private:
  void header();

  FrameSource from_;
  uint8_t hdr_[sizeof(FrameHeader)] = {};
  uint8_t hdr_have_ = 0;
  bool ended_ = false;
  bool end_frame_ = false;  // reading the exit frame's payload
  FrameError error_ = FrameError::kNone;
  uint32_t error_value_ = 0;
  uint32_t type_ = 0;
  uint32_t payload_left_ = 0;
  uint8_t exit_bytes_[sizeof(ExitPayload)] = {};
  ExitPayload exit_{};
};

// The 8 header bytes of a frame, little-endian.
inline void put_frame_header(uint8_t* out, uint32_t type, uint32_t length) {
  for (int i = 0; i < 4; i++) {
    out[i] = static_cast<uint8_t>(type >> (8 * i));
    out[4 + i] = static_cast<uint8_t>(length >> (8 * i));
  }
}

}  // namespace ember::abi
