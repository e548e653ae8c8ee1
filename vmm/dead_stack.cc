#include "vmm/dead_stack.h"

#include <sys/mman.h>

#include <cstdint>

namespace ember {

__attribute__((noinline)) void release_dead_stack() {
  uintptr_t sp;
  asm volatile("mov %%rsp, %0" : "=r"(sp));
  // Kept: the stack pointer's page and two below it, where the event loop
  // works (its frames would fault back in at once) and the madvise call runs.
  constexpr uintptr_t kPage = 4096, kKeep = 2 * kPage, kSpan = 128 * 1024;
  const uintptr_t end = (sp & ~(kPage - 1)) - kKeep;
  // ENOMEM for the part below the stack's lowest page is expected.
  (void)::madvise(reinterpret_cast<void*>(end - kSpan), kSpan, MADV_DONTNEED);
}

}  // namespace ember
