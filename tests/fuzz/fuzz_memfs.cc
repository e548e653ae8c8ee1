// libFuzzer target for the guest's in-memory file system
// (guest-init/memfs.cc), the state a hostile program drives through its
// file syscalls: any sequence of create, write, truncate, rename and remove
// on paths from a small alphabet (so that they collide: "..", nesting,
// renames into themselves) never crashes or reads outside memory (ASan),
// keeps every name findable, and runs out of memory as ENOSPC.
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <string>

#include "guest-init/memfs.cc"

namespace {

using ember::guest::MemFs;

uint64_t g_budget;
uint64_t fz_alloc(uint64_t len) {
  if (len > g_budget) return 0;
  g_budget -= len;
  return reinterpret_cast<uint64_t>(calloc(1, len));
}
void fz_free(uint64_t addr, uint64_t len) {
  g_budget += len;
  free(reinterpret_cast<void*>(addr));
}
void fz_copy(uint64_t dst, uint64_t src, uint64_t len) { memmove(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), len); }

// A normalised absolute path of 1-3 components from a 4-name alphabet.
std::string path_from(const uint8_t* d, size_t n, size_t* at) {
  static const char* kNames[] = {"a", "b", "tmp", "x"};
  std::string p;
  const size_t depth = *at < n ? 1 + d[(*at)++] % 3 : 1;
  for (size_t i = 0; i < depth; i++) p += std::string("/") + kNames[*at < n ? d[(*at)++] % 4 : 0];
  return p;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static MemFs* fs = new MemFs;  // 300 KiB: not on the stack
  g_budget = 256 * 1024;
  fs->init(MemFs::Alloc{fz_alloc, fz_free, fz_copy});
  size_t at = 0;
  char buf[8192];
  while (at < size) {
    const uint8_t op = data[at++] % 8;
    const std::string p = path_from(data, size, &at), q = path_from(data, size, &at);
    const uint32_t pl = static_cast<uint32_t>(p.size()), ql = static_cast<uint32_t>(q.size());
    const uint64_t amount = at < size ? uint64_t{data[at++]} * 97 : 0;
    uint32_t id = fs->lookup(p.data(), pl);
    switch (op) {
      case 0:
      case 1: {
        uint32_t made;
        const int32_t e = fs->create(p.data(), pl, op ? MemFs::Kind::kDir : MemFs::Kind::kFile, 0644, 1, &made);
        if (e == MemFs::kOk && fs->lookup(p.data(), pl) != made) abort();
        break;
      }
      case 2:
        if (id && fs->node(id).kind == MemFs::Kind::kFile) {
          const int64_t w = fs->write(id, amount, buf, sizeof buf < amount ? sizeof buf : amount, 2);
          if (w < 0 && w != -MemFs::kNoSpc && w != -MemFs::kFBig) abort();
        }
        break;
      case 3:
        if (id && fs->node(id).kind == MemFs::Kind::kFile) {
          (void)fs->truncate(id, amount * 31, 3);
          if (fs->read(id, 0, buf, sizeof buf) > fs->node(id).size) abort();
        }
        break;
      case 4: (void)fs->remove(p.data(), pl, false); break;
      case 5: (void)fs->remove(p.data(), pl, true); break;
      case 6: {
        const int32_t e = fs->rename(p.data(), pl, q.data(), ql, amount & 1, 4);
        if (e == MemFs::kOk && id && fs->lookup(q.data(), ql) != id) abort();  // the moved node answers at its new name
        break;
      }
      case 7:
        if (id) {
          fs->opened(id);
          (void)fs->remove(p.data(), pl, fs->node(id).kind == MemFs::Kind::kDir);
          fs->closed(id);
        }
        break;
    }
  }
  // Everything reachable has a path that finds it again.
  for (uint32_t i = 2; i < MemFs::kMaxNodes; i++) {
    if (fs->node(i).kind == MemFs::Kind::kFree || !fs->node(i).linked) continue;
    char path[512];
    const uint32_t n = fs->path_of(i, path, sizeof path);
    if (fs->lookup(path, n) != i) abort();
  }
  // Free everything for the next input.
  for (uint32_t i = MemFs::kMaxNodes; i-- > 2;)
    if (fs->node(i).kind != MemFs::Kind::kFree && fs->node(i).capacity) fz_free(fs->node(i).data, fs->node(i).capacity);
  return 0;
}
