#include "guest-init/stdio_frames.h"

#include "api/stdio_protocol.h"
#include "guest-init/klib.h"

namespace ember::guest {

uint32_t FrameDecoder::feed(const uint8_t* in, uint32_t n, uint8_t* out, uint64_t cap, uint64_t* produced) {
  uint32_t used = 0;
  uint64_t made = 0;
  while (used < n && !error_) {
    if (eof_) {  // nothing may follow EOF; drop it (it still frees credit)
      used = n;
      break;
    }
    if (payload_left_) {
      if (made == cap) break;
      uint64_t take = n - used;
      if (take > payload_left_) take = payload_left_;
      if (take > cap - made) take = cap - made;
      if (out) memcpy(out + made, in + used, take);
      made += take;
      used += static_cast<uint32_t>(take);
      payload_left_ -= static_cast<uint32_t>(take);
      continue;
    }
    // A header, maybe split across calls.
    while (hdr_have_ < sizeof hdr_ && used < n) hdr_[hdr_have_++] = in[used++];
    if (hdr_have_ < sizeof hdr_) break;
    hdr_have_ = 0;
    abi::FrameHeader h;
    memcpy(&h, hdr_, sizeof h);
    if (h.length > abi::kMaxFramePayload) {
      error_ = true;
    } else if (h.type == abi::kFrameStdin) {
      payload_left_ = h.length;  // zero-length data frames are allowed and mean nothing
    } else if (h.type == abi::kFrameStdinEof && h.length == 0) {
      eof_ = true;
    } else {
      error_ = true;
    }
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
