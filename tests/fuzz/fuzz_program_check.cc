// libFuzzer target for images/program_check.cc (a program's or a library's
// headers and dynamic section): any input is accepted or
// refused with a message, and nothing outside the input is read (ASan).
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <vector>

#include "images/program_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // An exact-size copy, so that a read one byte past the end is caught.
  std::vector<uint8_t> copy(data, data + size);
  auto r = ember::image::inspect_program(copy.data(), copy.size());
  if (!r && r.message().empty()) abort();
  auto l = ember::image::inspect_library(copy.data(), copy.size());
  if (!l && l.message().empty()) abort();
  return 0;
}
