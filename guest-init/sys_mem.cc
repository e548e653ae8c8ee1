// Memory syscalls: the address ranges come from AddressSpace; memory is
// identity-mapped RAM, so nothing here changes a page table.
#include "guest-init/files.h"
#include "guest-init/klib.h"
#include "guest-init/runtime.h"
#include "guest-init/syscalls.h"

namespace ember::guest {

using namespace lx;

EMBER_SYSCALL(brk) { return SysResult::ok(g_rt.mem.brk(a.a[0])); }

EMBER_SYSCALL(mmap) {
  const uint64_t addr = a.a[0], len = a.a[1], off = a.a[5];
  const uint32_t prot = static_cast<uint32_t>(a.a[2]), flags = static_cast<uint32_t>(a.a[3]);
  (void)prot;  // every page is read/write/execute: protection is not emulated
  const uint32_t type = flags & MAP_TYPE;
  if (len == 0 || off % kPage || len > (1ull << 46)) return EINVAL;
  if (type != MAP_PRIVATE && type != MAP_SHARED && type != MAP_SHARED_VALIDATE) return EINVAL;
  image::ImageFile file{};
  bool from_file = false;
  uint32_t mem_node = 0;  // a memfs file: copied in at its current contents
  if (!(flags & MAP_ANONYMOUS)) {
    OpenFile* f = g_rt.files.get(static_cast<int32_t>(a.a[4]));
    if (!f) return EBADF;
    if (f->kind == FileKind::kFile) {
      file = g_rt.image.file(f->index);
      from_file = true;
    } else if (f->kind == FileKind::kMemFile) {
      mem_node = f->index;
    } else if (f->kind != FileKind::kZero) {
      return ENODEV;
    }
  }
  uint64_t at;
  if (flags & MAP_FIXED) {
    if (addr % kPage) return EINVAL;
    if (!g_rt.mem.map_fixed(addr, len)) return ENOMEM;
    at = addr;
  } else {
    at = g_rt.mem.map(len);
    if (!at) return ENOMEM;
  }
  // A private file mapping is a copy (the image is read-only and shared by
  // every VM of the function; the copy is what MAP_PRIVATE promises).
  if (from_file && off < file.size) {
    uint64_t n = file.size - off < len ? file.size - off : len;
    memcpy(reinterpret_cast<void*>(at), file.data + off, n);
  }
  // A memfs file likewise (MAP_SHARED too: a copy, so another descriptor's
  // later writes do not show through, nor the mapping's in the file).
  if (mem_node) g_rt.fs.read(mem_node, off, reinterpret_cast<void*>(at), len);
  return SysResult::ok(at);
}

EMBER_SYSCALL(munmap) {
  if (a.a[0] % kPage || a.a[1] == 0) return EINVAL;
  g_rt.mem.unmap(a.a[0], a.a[1]);
  return SysResult::ok(0);
}

EMBER_SYSCALL(mprotect) {
  if (a.a[0] % kPage) return EINVAL;
  return SysResult::ok(0);
}

EMBER_SYSCALL(madvise) {
  if (a.a[0] % kPage) return EINVAL;
  const uint32_t advice = static_cast<uint32_t>(a.a[2]);
  if (advice == MADV_DONTNEED || advice == MADV_REMOVE) g_rt.mem.discard(a.a[0], a.a[1]);
  return SysResult::ok(0);
}

EMBER_SYSCALL(mremap) {
  const uint64_t old_addr = a.a[0], old_len = a.a[1], new_len = a.a[2];
  const uint32_t flags = static_cast<uint32_t>(a.a[3]);
  if (old_addr % kPage || (flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP))) return EINVAL;
  if (flags & (MREMAP_FIXED | MREMAP_DONTUNMAP)) return EINVAL;  // not needed by libc allocators
  if (old_len == 0 || new_len == 0) return EINVAL;
  uint64_t at = g_rt.mem.remap(old_addr, old_len, new_len, flags & MREMAP_MAYMOVE);
  if (!at) return ENOMEM;
  return SysResult::ok(at);
}

EMBER_SYSCALL(msync) { return SysResult::ok(0); }
EMBER_SYSCALL(mlock) { return SysResult::ok(0); }

}  // namespace ember::guest
