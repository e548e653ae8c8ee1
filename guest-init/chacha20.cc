#include "guest-init/chacha20.h"

namespace ember::guest {
namespace {

inline uint32_t rotl(uint32_t v, int n) { return (v << n) | (v >> (32 - n)); }

inline void quarter(uint32_t* x, int a, int b, int c, int d) {
  x[a] += x[b], x[d] = rotl(x[d] ^ x[a], 16);
  x[c] += x[d], x[b] = rotl(x[b] ^ x[c], 12);
  x[a] += x[b], x[d] = rotl(x[d] ^ x[a], 8);
  x[c] += x[d], x[b] = rotl(x[b] ^ x[c], 7);
}

inline uint32_t load_le32(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

}  // namespace

void chacha20_block(const uint32_t key[8], uint32_t counter, const uint32_t nonce[3], uint8_t out[64]) {
  uint32_t s[16] = {0x61707865, 0x3320646e, 0x79622d32, 0x6b206574};
  for (int i = 0; i < 8; i++) s[4 + i] = key[i];
  s[12] = counter;
  s[13] = nonce[0], s[14] = nonce[1], s[15] = nonce[2];
  uint32_t x[16];
  for (int i = 0; i < 16; i++) x[i] = s[i];
  for (int round = 0; round < 10; round++) {
    quarter(x, 0, 4, 8, 12), quarter(x, 1, 5, 9, 13), quarter(x, 2, 6, 10, 14), quarter(x, 3, 7, 11, 15);
    quarter(x, 0, 5, 10, 15), quarter(x, 1, 6, 11, 12), quarter(x, 2, 7, 8, 13), quarter(x, 3, 4, 9, 14);
  }
  for (int i = 0; i < 16; i++) {
    uint32_t v = x[i] + s[i];
    out[4 * i] = static_cast<uint8_t>(v), out[4 * i + 1] = static_cast<uint8_t>(v >> 8);
    out[4 * i + 2] = static_cast<uint8_t>(v >> 16), out[4 * i + 3] = static_cast<uint8_t>(v >> 24);
  }
}

void Rng::seed(const uint8_t key[32], bool use_rdrand) {
  for (int i = 0; i < 8; i++) key_[i] = load_le32(key + 4 * i);
  nonce_[0] = nonce_[1] = nonce_[2] = 0;
  counter_ = 0;
  left_ = 0;
  rdrand_ = use_rdrand;
}

void Rng::mix(const uint8_t seed[32]) {
  for (int i = 0; i < 8; i++) key_[i] ^= load_le32(seed + 4 * i);
  for (uint32_t i = 64 - left_; i < 64; i++) block_[i] = 0;
  left_ = 0;
}

void Rng::refill() {
  if (rdrand_) {
    uint64_t r = 0;
    unsigned char ok = 0;
    asm volatile("rdrand %0; setc %1" : "=r"(r), "=qm"(ok) : : "cc");
    if (ok) key_[0] ^= static_cast<uint32_t>(r), key_[1] ^= static_cast<uint32_t>(r >> 32);
  }
  chacha20_block(key_, counter_, nonce_, block_);
  if (++counter_ == 0) ++nonce_[0];  // 2^32 blocks: move to a new nonce, never repeat
  for (int i = 0; i < 8; i++) {
    key_[i] = load_le32(block_ + 4 * i);
    block_[4 * i] = block_[4 * i + 1] = block_[4 * i + 2] = block_[4 * i + 3] = 0;
  }
  left_ = 32;  // the second half is output
}

void Rng::fill(void* out, size_t n) {
  auto p = static_cast<uint8_t*>(out);
  while (n) {
    if (left_ == 0) refill();
    size_t take = left_ < n ? left_ : n;
    const uint32_t at = 64 - left_;
    for (size_t i = 0; i < take; i++) {
      p[i] = block_[at + i];
      block_[at + i] = 0;  // forward secrecy within the block
    }
    left_ -= static_cast<uint32_t>(take);
    p += take, n -= take;
  }
}

}  // namespace ember::guest
