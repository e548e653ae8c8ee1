// The program's initial stack (System V x86-64 ABI, as Linux builds it):
//
//   rsp -> argc, argv[0..argc-1], NULL, envp[..], NULL, auxv pairs, AT_NULL
//          ... padding, then the strings, AT_RANDOM bytes, "x86_64"   <- top
//
// rsp is 16-byte aligned. Pure: writes into a window that stands for the
// guest addresses [top - window_size, top), so it is unit-tested on the host.
#pragma once

#include <stdint.h>

namespace ember::guest {

struct StringSource {
  uint32_t count;
  const void* ctx;
  // String i: its bytes (no NUL needed) and length.
  const char* (*at)(const void* ctx, uint32_t i, uint32_t* len);
};

struct StackSpec {
  StringSource argv;
  StringSource envp;
  const char* execfn;
  uint32_t execfn_len;
  uint8_t random[16];
  uint64_t phdr, phent, phnum, entry;
  uint64_t base;  // AT_BASE: where the interpreter is (0: a static program)
  uint64_t hwcap, hwcap2;
  uint64_t clktck;
};

// Returns the initial rsp, or 0 if everything does not fit in the window.
uint64_t build_initial_stack(uint8_t* window, uint64_t window_size, uint64_t top, const StackSpec& spec);

}  // namespace ember::guest
