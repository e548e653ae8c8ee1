#include "guest-init/stdio_frames.h"

#include "guest-init/klib.h"

namespace ember::guest {

uint32_t FrameDecoder::feed(const uint8_t* in, uint32_t n, uint8_t* out, uint64_t cap, uint64_t* produced) {
  uint32_t used = 0;
  uint64_t made = 0;
  while (used < n) {
    const uint64_t room = cap - made;
    abi::FrameReader::Piece piece;
    const uint32_t k = reader_.next(in + used, n - used, room > 0xffffffffu ? 0xffffffffu : static_cast<uint32_t>(room), &piece);
    if (k == 0) break;
    if (out && piece.len) memcpy(out + made, piece.data, piece.len);
    made += piece.len;
    used += k;
  }
  *produced = made;
  return used;
}

void ByteRing::push(const uint8_t* data, uint32_t n) {
  const uint32_t pos = static_cast<uint32_t>(head_ & (size_ - 1));
  const uint32_t first = n < size_ - pos ? n : size_ - pos;
  memcpy(mem_ + pos, data, first);
  memcpy(mem_, data + first, n - first);
  head_ += n;
}

const uint8_t* ByteRing::peek(uint32_t* n) const {
  const uint32_t pos = static_cast<uint32_t>(tail_ & (size_ - 1));
  const uint32_t u = used();
  *n = u < size_ - pos ? u : size_ - pos;
  return mem_ + pos;
}

const uint8_t* ByteRing::peek_second(uint32_t* n) const {
  uint32_t first;
  peek(&first);
  *n = used() - first;
  return mem_;
}

}  // namespace ember::guest
