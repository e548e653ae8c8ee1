// ImageReader: validates an Ember function image (api/image_format.h) once,
// then hands out views into it. Nothing in an image is trusted: every offset,
// size, count and string is checked in open() with overflow-safe arithmetic,
// so the accessors afterwards need no checks of their own.
//
// FREESTANDING: this header and image_reader.cc are also compiled into the
// guest kernel (-ffreestanding -nostdlib -mgeneral-regs-only -fno-exceptions
// -fno-rtti). Only <stdint.h>/<stddef.h> and api/ headers, no libc calls, no
// globals with constructors, no floating point. The guest build compiles
// images/image_reader.cc directly (it does not link the host library
// `ember_image`).
//
// Integers are read byte by byte (little-endian), so the image may sit at any
// address: no alignment is assumed.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "api/image_format.h"

namespace ember::image {

enum class ImageStatus : uint32_t {
  kOk = 0,
  kTruncated,      // the header, file table or string area ends past the image end
  kBadMagic,       // not "EMBERIMG"
  kBadVersion,     // version != kImageVersion
  kBadHeader,      // header_size != sizeof(ImageHeader), or flags != 0
  kBadTable,       // table/strings misplaced (overlap, overflow), bad file mode/reserved
  kBadCrc,         // table_crc32 does not match the metadata
  kBadString,      // a StringRef outside the string area, without its NUL, or with a NUL inside
  kBadPath,        // a path that is not absolute and normalised, or too long
  kDuplicatePath,  // two files with the same path
  kBadFileRange,   // file data not 4 KiB-aligned or not inside the image
  kBadExec,        // exec_file >= file_count
  kTooMany,        // file_count, arg_count or env_count above its limit
};

// A short English phrase for error messages, e.g. "truncated image".
const char* image_status_text(ImageStatus s);

// CRC-32 as in zlib (IEEE 802.3, reflected, poly 0xedb88320). Chainable:
// crc32(b, nb, crc32(a, na)) == crc32(a+b, na+nb).
uint32_t crc32(const uint8_t* data, uint64_t size, uint32_t crc = 0);

// A string inside the image; data[size] == '\0' and data has no other NUL.
struct Bytes {
  const char* data;
  uint32_t size;
};

struct ImageFile {
  Bytes path;
  uint32_t mode;
  const uint8_t* data;  // inside the image
  uint64_t size;
};

class ImageReader {
 public:
  // Checks, in this order (the first failure is returned):
  //   size >= sizeof(ImageHeader)                                  kTruncated
  //   magic, version                                               kBadMagic, kBadVersion
  //   header_size == 64, flags == 0                                kBadHeader
  //   file_count <= kImageMaxFiles, arg/env_count <= kImageMaxStrings  kTooMany
  //   table_offset >= header_size, strings_offset >= table end      kBadTable
  //   table and string area end inside the image                   kTruncated
  //   table_crc32 over [table_offset, strings end)                 kBadCrc
  //   every file: reserved == 0, mode is a regular file            kBadTable
  //   every StringRef inside the strings, NUL-terminated, no NUL   kBadString
  //   every path absolute + normalised, length <= kImagePathMax    kBadPath
  //   no two files with the same path                              kDuplicatePath
  //   every file's data 4 KiB-aligned and inside the image         kBadFileRange
  //   exec_file < file_count                                       kBadExec
  // On failure the reader stays empty (all counts 0).
  ImageStatus open(const uint8_t* data, uint64_t size);

  uint32_t file_count() const { return file_count_; }
  ImageFile file(uint32_t i) const;  // i < file_count()
  // Exact match on the whole path (path need not be NUL-terminated).
  bool find(const char* path, uint32_t path_len, ImageFile* out) const;
  uint32_t exec_index() const { return exec_; }

  uint32_t arg_count() const { return arg_count_; }
  Bytes arg(uint32_t i) const;  // i < arg_count()
  uint32_t env_count() const { return env_count_; }
  Bytes env(uint32_t i) const;  // i < env_count()

 private:
  Bytes string_at(const uint8_t* ref) const;

  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  const uint8_t* files_ = nullptr;    // FileEntry[file_count_]
  const uint8_t* args_ = nullptr;     // StringRef[arg_count_]
  const uint8_t* envs_ = nullptr;     // StringRef[env_count_]
  const uint8_t* strings_ = nullptr;  // the string area
  uint32_t file_count_ = 0;
  uint32_t arg_count_ = 0;
  uint32_t env_count_ = 0;
  uint32_t exec_ = 0;
};

}  // namespace ember::image
