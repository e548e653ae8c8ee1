// Whether a file can be a function's program. The guest runs static ELF64
// x86-64 executables: ET_EXEC, or ET_DYN without PT_INTERP (static-pie); it
// has no dynamic loader yet. Checked where a program enters an image (the
// writer, emberd's deploy), so that a wrong binary is refused with a reason
// there instead of failing later inside a VM.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "base/result.h"

namespace ember::image {

// Ok, or what is wrong ("is dynamically linked (it asks for
// /lib64/ld-linux-x86-64.so.2): link it with -static or -static-pie", ...).
// Reads only inside [data, data + size).
Result<void> check_static_program(const uint8_t* data, size_t size);

}  // namespace ember::image
