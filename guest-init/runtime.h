// The runtime's state: one program, one thread. A single constinit object
// (constant-initialised, no constructor runs) in the kernel's .bss/.data.
#pragma once

#include <stdint.h>

#include "guest-init/address_space.h"
#include "guest-init/chacha20.h"
#include "guest-init/clock.h"
#include "guest-init/files.h"
#include "guest-init/linux_abi.h"
#include "guest-init/memfs.h"
#include "guest-init/signals.h"
#include "images/image_reader.h"

namespace ember::guest {

struct Runtime {
  Clock clock;
  Rng rng;
  AddressSpace mem;
  image::ImageReader image;
  Files files;
  MemFs fs;  // the writable files (/tmp and what the program creates)
  Signals signals;
  const char* exec_path = nullptr;  // in the image, NUL-terminated
  uint32_t exec_path_len = 0;
  uint64_t fs_base = 0;
  uint64_t gs_base = 0;
  uint64_t tid_address = 0;
  uint32_t umask = 0;        // set at start (022)
  Lookup cwd;                // "/" from the start until chdir
  lx::Rlimit rlimits[lx::RLIMIT_NLIMITS] = {};
  uint64_t rng_generation = 0;  // BootInfo.generation the CSPRNG last took a seed for
};

// Random bytes for the program (getrandom, /dev/urandom, AT_RANDOM): first
// mixes in the boot info's fresh seed if the VM was restored or reset since
// the last call (a new BootInfo.generation).
void random_bytes(void* out, uint64_t n);

extern constinit Runtime g_rt;

}  // namespace ember::guest
