// The Ember function image: one file holding the program, the files it reads,
// and how to start it (argv, envp). Built by `ember-image pack`, read by the
// guest (from a read-only memory slot) and by the host tools.
//
// Layout (all integers little-endian):
//   ImageHeader                       at 0
//   FileEntry[file_count]             at table_offset
//   StringRef[arg_count]              right after the file entries
//   StringRef[env_count]              right after the args
//   strings                           at strings_offset, strings_size bytes;
//                                     every string is followed by a NUL
//   file data                         each at a 4 KiB-aligned data_offset
//
// table_crc32 covers [table_offset, strings_offset + strings_size): the
// metadata, not the file data, so the guest can check it in microseconds.
// Readers must check every offset and size against the image size (see
// images/image_reader.h); nothing in an image is trusted.
//
// Freestanding: included by the host and by the guest.
#pragma once

#include <stdint.h>

namespace ember::abi {

inline constexpr char kImageMagic[8] = {'E', 'M', 'B', 'E', 'R', 'I', 'M', 'G'};
inline constexpr uint32_t kImageVersion = 1;
inline constexpr uint32_t kImageMaxFiles = 4096;
inline constexpr uint32_t kImageMaxStrings = 4096;  // for args and for env, each
inline constexpr uint32_t kImagePathMax = 4095;
inline constexpr uint64_t kImageDataAlign = 4096;

struct ImageHeader {
  char magic[8];            // kImageMagic
  uint32_t version;         // kImageVersion
  uint32_t header_size;     // sizeof(ImageHeader)
  uint32_t file_count;      // <= kImageMaxFiles
  uint32_t arg_count;       // argv, argv[0] included; <= kImageMaxStrings
  uint32_t env_count;       // "KEY=VALUE"; <= kImageMaxStrings
  uint32_t exec_file;       // index into the file table: the program to run
  uint64_t table_offset;
  uint64_t strings_offset;
  uint64_t strings_size;
  uint32_t table_crc32;     // CRC-32 (IEEE, zlib's) of the metadata
  uint32_t flags;           // 0
};
static_assert(sizeof(ImageHeader) == 64);

struct StringRef {
  uint32_t offset;  // into the strings area
  uint32_t length;  // bytes, excluding the NUL that follows
};
static_assert(sizeof(StringRef) == 8);

inline constexpr uint32_t kFileModeExec = 0100755;
inline constexpr uint32_t kFileModeRegular = 0100644;

struct FileEntry {
  StringRef path;        // absolute, normalised: "/", no "//", no "." or ".." components
  uint32_t mode;         // st_mode bits (regular files only)
  uint32_t reserved;
  uint64_t data_offset;  // multiple of kImageDataAlign
  uint64_t data_size;
};
static_assert(sizeof(FileEntry) == 32);

}  // namespace ember::abi
