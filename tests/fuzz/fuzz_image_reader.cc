// libFuzzer target for images/image_reader.cc: any input either is refused by
// ImageReader::open or yields views that stay inside the input. Every byte of
// every path/arg/env and the first/last byte of each file's data are read (so
// ASan catches an out-of-bounds view), and the reader's own promises are
// checked: NUL after each string, no NUL inside, every path found by find().
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "images/image_reader.h"

namespace {

using ember::image::Bytes;
using ember::image::ImageFile;
using ember::image::ImageReader;
using ember::image::ImageStatus;

uint32_t touch(Bytes b) {
  uint32_t sum = 0;
  for (uint32_t i = 0; i < b.size; ++i) {
    if (b.data[i] == '\0') abort();
    sum += uint8_t(b.data[i]);
  }
  if (b.data[b.size] != '\0') abort();
  return sum;
}

uint64_t load64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = v << 8 | p[i];
  return v;
}

void check(const uint8_t* data, size_t size) {
  ImageReader reader;
  ImageStatus st = reader.open(data, size);
  if (ember::image::image_status_text(st) == nullptr) abort();
  if (st != ImageStatus::kOk) {
    if (reader.file_count() != 0 || reader.arg_count() != 0 || reader.env_count() != 0) abort();
    return;
  }
  volatile uint32_t sink = 0;
  if (reader.exec_index() >= reader.file_count()) abort();
  for (uint32_t i = 0; i < reader.file_count(); ++i) {
    ImageFile f = reader.file(i);
    sink = sink + touch(f.path);
    if (f.path.size < 2 || f.path.data[0] != '/') abort();
    if (f.data < data || uint64_t(f.data - data) > size || f.size > size - uint64_t(f.data - data)) abort();
    if (f.size > 0) sink = sink + f.data[0] + f.data[f.size - 1];
    ImageFile found{};
    if (!reader.find(f.path.data, f.path.size, &found) || found.data != f.data || found.size != f.size) abort();
  }
  for (uint32_t i = 0; i < reader.arg_count(); ++i) sink = sink + touch(reader.arg(i));
  for (uint32_t i = 0; i < reader.env_count(); ++i) sink = sink + touch(reader.env(i));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  check(data, size);
  // Random mutations almost never keep the CRC right, which would stop the
  // fuzzer at that check: when the CRC is the only thing wrong so far, fix
  // it in an exact-size copy (so ASan still sees overruns) and go on.
  ImageReader probe;
  if (probe.open(data, size) == ImageStatus::kBadCrc) {
    uint8_t* copy = static_cast<uint8_t*>(malloc(size));
    memcpy(copy, data, size);
    uint64_t table = load64(copy + 32);
    uint64_t end = load64(copy + 40) + load64(copy + 48);  // kBadCrc: checked to be in bounds
    uint32_t crc = ember::image::crc32(copy + table, end - table);
    for (int i = 0; i < 4; ++i) copy[56 + i] = uint8_t(crc >> (8 * i));
    check(copy, size);
    free(copy);
  }
  return 0;
}
