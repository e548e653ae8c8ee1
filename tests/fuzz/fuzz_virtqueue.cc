// libFuzzer target for vmm/virtqueue.cc: the input is laid out as guest
// memory holding a split ring (descriptor table at 0, available ring at
// 0x1000, used ring at 0x2000, buffers anywhere), and every chain is popped,
// its buffers read and written in full (ASan checks each byte is guest
// memory), and returned. A hostile ring must end in kBroken, never in a
// crash, a hang, or an out-of-bounds access.
//
// Input: [0] queue size exponent (size = 1 << (b % 9)), [1] flags
// (bit 0: undo every other pop, bit 1: start the indices near 65535),
// [2..] guest memory, copied to GPA 0 (64 KiB RAM). A 4 KiB read-only
// "image" region at GPA 0x100000 holds the first input bytes again.
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "vmm/guest_memory.h"
#include "vmm/virtqueue.h"

namespace {
constexpr size_t kRam = 64 * 1024;
constexpr uint64_t kImageGpa = 0x100000;
constexpr size_t kImage = 4096;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint16_t qsize = static_cast<uint16_t>(1u << (data[0] % 9));
  const uint8_t flags = data[1];
  // Exactly-sized heap buffers so that ASan flags any byte outside them.
  std::vector<uint8_t> ram(kRam, 0), image(kImage, 0);
  memcpy(ram.data(), data + 2, size - 2 < kRam ? size - 2 : kRam);
  memcpy(image.data(), data, size < kImage ? size : kImage);

  ember::GuestMemory mem;
  if (!mem.add_borrowed(0, ram, true) || !mem.add_borrowed(kImageGpa, image, false)) abort();
  ember::Virtqueue q;
  if (!q.activate(mem, ember::VirtqueueConfig{qsize, 0, 0x1000, 0x2000}, 256)) abort();
  if (flags & 2) {
    uint16_t start;
    memcpy(&start, ram.data() + 0x1002, 2);  // near the driver's index, so wrap-around is exercised
    start = static_cast<uint16_t>(start - (flags >> 4));
    q.restore_indices(start, start);
  }

  ember::DescriptorChain chain;
  unsigned pops = 0, undone = 0;
  uint32_t sum = 0;
  // More iterations than a queue holds: the index check must stop us.
  for (unsigned i = 0; i < 4u * qsize + 8; i++) {
    const auto r = q.pop(chain);
    if (r == ember::Virtqueue::Pop::kEmpty) break;
    if (r == ember::Virtqueue::Pop::kBroken) {
      if (!q.broken() || q.broken_reason().empty()) abort();
      if (q.pop(chain) != ember::Virtqueue::Pop::kBroken) abort();  // stays broken
      break;
    }
    if (chain.head >= qsize) abort();
    if (chain.readable.size() + chain.writable.size() > qsize) abort();
    uint64_t rbytes = 0, wbytes = 0;
    for (auto s : chain.readable) {
      for (uint8_t b : s) sum += b;
      rbytes += s.size();
    }
    for (auto s : chain.writable) {
      memset(s.data(), 0x5a, s.size());
      wbytes += s.size();
    }
    if (rbytes != chain.readable_bytes || wbytes != chain.writable_bytes) abort();
    if (rbytes + wbytes > ember::Virtqueue::kMaxChainBytes) abort();
    pops++;
    if ((flags & 1) && (pops & 1) && undone < 4) {
      q.undo_pop();
      undone++;
      continue;
    }
    q.add_used(chain.head, static_cast<uint32_t>(wbytes));
  }
  q.publish_used();
  (void)q.should_interrupt();
  (void)q.has_available();
  return static_cast<int>(sum & 0);
}
