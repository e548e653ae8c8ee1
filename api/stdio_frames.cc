// Freestanding (see stdio_frames.h): no libc, bytes read one by one.
#include "api/stdio_frames.h"

namespace ember::abi {
namespace {

uint32_t le32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 | static_cast<uint32_t>(p[2]) << 16 |
         static_cast<uint32_t>(p[3]) << 24;
}

}  // namespace

void FrameReader::header() {
  const uint32_t type = le32(hdr_), length = le32(hdr_ + 4);
  hdr_have_ = 0;
  if (length > kMaxFramePayload) {
    error_ = FrameError::kTooLong, error_value_ = length;
    return;
  }
  const bool data = from_ == FrameSource::kHost ? type == kFrameStdin : type == kFrameStdout || type == kFrameStderr;
  const bool end = from_ == FrameSource::kHost ? type == kFrameStdinEof : type == kFrameExit;
  if (!data && !end) {
    error_ = FrameError::kUnknownType, error_value_ = type;
  } else if (end && length != (from_ == FrameSource::kHost ? 0 : sizeof(ExitPayload))) {
    error_ = FrameError::kBadLength, error_value_ = length;
  } else if (data) {
    type_ = type, payload_left_ = length;  // zero-length data frames are allowed and mean nothing
  } else if (length == 0) {
    ended_ = true;
  } else {
    end_frame_ = true, payload_left_ = length;
  }
}

uint32_t FrameReader::next(const uint8_t* in, uint32_t n, uint32_t max_payload, Piece* piece) {
  *piece = Piece{};
  if (error_ != FrameError::kNone) return 0;
  if (ended_) return n;  // nothing may follow the end; drop it (it still frees credit)
  if (payload_left_ && end_frame_) {
    uint32_t used = 0;
    while (used < n && payload_left_) exit_bytes_[sizeof exit_bytes_ - payload_left_--] = in[used++];
    if (payload_left_ == 0) {
      exit_ = ExitPayload{le32(exit_bytes_), le32(exit_bytes_ + 4)};
      end_frame_ = false;
      if (exit_.kind != kExitCode && exit_.kind != kExitSignal)
        error_ = FrameError::kBadExitKind, error_value_ = exit_.kind;
      else
        ended_ = true;
    }
    return used;
  }
  if (payload_left_) {
    uint32_t take = n < payload_left_ ? n : payload_left_;
    if (take > max_payload) take = max_payload;
    *piece = Piece{type_, in, take};
    payload_left_ -= take;
    return take;
  }
  uint32_t used = 0;
  while (hdr_have_ < sizeof hdr_ && used < n) hdr_[hdr_have_++] = in[used++];
  if (hdr_have_ == sizeof hdr_) header();
  return used;
}

void FrameReader::skim(const uint8_t* in, uint64_t n) {
  Piece piece;
  while (n && error_ == FrameError::kNone) {
    const uint32_t used = next(in, n > 0xffffffffu ? 0xffffffffu : static_cast<uint32_t>(n), 0xffffffffu, &piece);
    in += used, n -= used;
  }
}

}  // namespace ember::abi
