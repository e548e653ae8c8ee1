// Whether a file can be a function's program, and what it needs. The guest
// runs ELF64 x86-64 executables: static (ET_EXEC, or ET_DYN without
// PT_INTERP: static-pie) or dynamic (PT_INTERP: the guest loads the named
// loader from the image, which then opens the DT_NEEDED libraries).
// Checked where a program enters an image (the writer, emberd's deploy), so
// that a wrong binary is refused with a reason there instead of failing
// later inside a VM.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <string>
#include <vector>

#include "base/result.h"

namespace ember::image {

// What an ELF object asks of the dynamic loader (all empty: static).
struct ProgramInfo {
  std::string interpreter;             // PT_INTERP, e.g. /lib64/ld-linux-x86-64.so.2
  std::vector<std::string> needed;     // DT_NEEDED, in order
  std::vector<std::string> runpath;    // DT_RUNPATH, split at ':' ($ORIGIN unexpanded)
  std::vector<std::string> rpath;      // DT_RPATH, likewise (ld.so ignores it when there is a RUNPATH)
};

// The program's ProgramInfo, or what is wrong with it ("is a 32-bit ELF
// file: ...", "is truncated: ..."). Reads only inside [data, data + size);
// every offset, length and string in it is checked.
Result<ProgramInfo> inspect_program(const uint8_t* data, size_t size);

// The dynamic section of a shared library (its interpreter stays empty).
Result<ProgramInfo> inspect_library(const uint8_t* data, size_t size);

}  // namespace ember::image
