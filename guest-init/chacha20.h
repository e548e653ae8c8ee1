// ChaCha20 (RFC 8439) as the guest's CSPRNG, keyed from the host's
// BootInfo.random_seed. Fast key erasure: each block's first half becomes
// the next key, the second half is output, so no earlier output can be
// recomputed from the state. Where the CPU has RDRAND (native in ring 3,
// ~20 ns here), every block also mixes 64 fresh bits into the key: VMs
// restored from one snapshot share this state, and must not share output.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace ember::guest {

// One ChaCha20 block: out = chacha20(key, counter, nonce).
void chacha20_block(const uint32_t key[8], uint32_t counter, const uint32_t nonce[3], uint8_t out[64]);

class Rng {
 public:
  // use_rdrand: mix the CPU's RDRAND into every block (host tests turn it
  // off to compare streams).
  void seed(const uint8_t key[32], bool use_rdrand);
  void fill(void* out, size_t n);
  // Mixes 32 fresh bytes into the key (a VM restored from a snapshot gets
  // a new seed from its VMM) and drops any output already computed, so
  // that nothing handed out afterwards depends on the old state alone.
  void mix(const uint8_t seed[32]);

 private:
  void refill();
  uint32_t key_[8] = {};
  uint32_t nonce_[3] = {};
  uint32_t counter_ = 0;
  uint8_t block_[64] = {};
  uint32_t left_ = 0;  // unread bytes at the end of block_
  bool rdrand_ = false;
};

}  // namespace ember::guest
