// ChaCha20 (RFC 8439) as the guest's CSPRNG: keyed from the host's
// BootInfo.random_seed, one block per 64 bytes, counter never reused.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace ember::guest {

// One ChaCha20 block: out = chacha20(key, counter, nonce).
void chacha20_block(const uint32_t key[8], uint32_t counter, const uint32_t nonce[3], uint8_t out[64]);

class Rng {
 public:
  void seed(const uint8_t key[32]);
  void fill(void* out, size_t n);

 private:
  void refill();
  uint32_t key_[8] = {};
  uint32_t nonce_[3] = {};
  uint32_t counter_ = 0;
  uint8_t block_[64] = {};
  uint32_t left_ = 0;  // unread bytes at the end of block_
};

}  // namespace ember::guest
