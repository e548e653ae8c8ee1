// Freestanding (see image_reader.h): no libc, no globals with constructors.
#include "images/image_reader.h"

namespace ember::image {
namespace {

using abi::FileEntry;
using abi::ImageHeader;
using abi::StringRef;

// Field offsets, so that the image is read byte by byte (no alignment
// assumption, explicit little-endian).
constexpr uint64_t kHdrMagic = 0;
constexpr uint64_t kHdrVersion = 8;
constexpr uint64_t kHdrHeaderSize = 12;
constexpr uint64_t kHdrFileCount = 16;
constexpr uint64_t kHdrArgCount = 20;
constexpr uint64_t kHdrEnvCount = 24;
constexpr uint64_t kHdrExecFile = 28;
constexpr uint64_t kHdrTableOffset = 32;
constexpr uint64_t kHdrStringsOffset = 40;
constexpr uint64_t kHdrStringsSize = 48;
constexpr uint64_t kHdrTableCrc = 56;
constexpr uint64_t kHdrFlags = 60;
static_assert(offsetof(ImageHeader, version) == kHdrVersion);
static_assert(offsetof(ImageHeader, header_size) == kHdrHeaderSize);
static_assert(offsetof(ImageHeader, file_count) == kHdrFileCount);
static_assert(offsetof(ImageHeader, arg_count) == kHdrArgCount);
static_assert(offsetof(ImageHeader, env_count) == kHdrEnvCount);
static_assert(offsetof(ImageHeader, exec_file) == kHdrExecFile);
static_assert(offsetof(ImageHeader, table_offset) == kHdrTableOffset);
static_assert(offsetof(ImageHeader, strings_offset) == kHdrStringsOffset);
static_assert(offsetof(ImageHeader, strings_size) == kHdrStringsSize);
static_assert(offsetof(ImageHeader, table_crc32) == kHdrTableCrc);
static_assert(offsetof(ImageHeader, flags) == kHdrFlags);

constexpr uint64_t kFePath = 0;  // StringRef
constexpr uint64_t kFeMode = 8;
constexpr uint64_t kFeReserved = 12;
constexpr uint64_t kFeDataOffset = 16;
constexpr uint64_t kFeDataSize = 24;
static_assert(offsetof(FileEntry, path) == kFePath);
static_assert(offsetof(FileEntry, mode) == kFeMode);
static_assert(offsetof(FileEntry, reserved) == kFeReserved);
static_assert(offsetof(FileEntry, data_offset) == kFeDataOffset);
static_assert(offsetof(FileEntry, data_size) == kFeDataSize);

constexpr uint64_t kFileEntrySize = sizeof(FileEntry);
constexpr uint64_t kStringRefSize = sizeof(StringRef);
constexpr uint32_t kModeTypeMask = 0170000;
constexpr uint32_t kModeRegular = 0100000;

uint32_t load32(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

uint64_t load64(const uint8_t* p) { return uint64_t(load32(p)) | uint64_t(load32(p + 4)) << 32; }

// Nibble-at-a-time table: 64 bytes of .rodata, constant-initialised.
constexpr uint32_t kCrcNibble[16] = {
    0x00000000, 0x1db71064, 0x3b6e20c8, 0x26d930ac, 0x76dc4190, 0x6b6b51f4, 0x4db26158, 0x5005713c,
    0xedb88320, 0xf00f9344, 0xd6d6a3e8, 0xcb61b38c, 0x9b64c2b0, 0x86d3d2d4, 0xa00ae278, 0xbdbdf21c,
};

// A StringRef at `ref` is inside the string area, followed by its NUL, and
// holds no other NUL (so C code sees the same string the host wrote).
bool string_ok(const uint8_t* ref, const uint8_t* strings, uint64_t strings_size) {
  uint64_t off = load32(ref);
  uint64_t len = load32(ref + 4);
  if (off >= strings_size || len >= strings_size - off) return false;  // off + len < size
  const uint8_t* s = strings + off;
  for (uint64_t i = 0; i < len; ++i) {
    if (s[i] == 0) return false;
  }
  return s[len] == 0;
}

// Absolute and normalised: starts with '/', no empty, "." or ".." component,
// no trailing '/', not "/" itself (a file, not the root directory).
bool path_ok(const char* p, uint32_t len) {
  if (len < 2 || len > abi::kImagePathMax || p[0] != '/' || p[len - 1] == '/') return false;
  uint32_t i = 1;  // start of the current component
  while (i <= len) {
    uint32_t j = i;
    while (j < len && p[j] != '/') ++j;
    uint32_t n = j - i;
    if (n == 0) return false;                                      // "//"
    if (n == 1 && p[i] == '.') return false;                       // "."
    if (n == 2 && p[i] == '.' && p[i + 1] == '.') return false;    // ".."
    i = j + 1;
  }
  return true;
}

bool bytes_equal(const char* a, const char* b, uint32_t n) {
  for (uint32_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) return false;
  }
  return true;
}

// Paths mostly share their leading directories and differ near the end, so
// the duplicate check compares backwards.
bool bytes_equal_backwards(const char* a, const char* b, uint32_t n) {
  while (n > 0) {
    --n;
    if (a[n] != b[n]) return false;
  }
  return true;
}

}  // namespace

const char* image_status_text(ImageStatus s) {
  switch (s) {
    case ImageStatus::kOk: return "ok";
    case ImageStatus::kTruncated: return "truncated image";
    case ImageStatus::kBadMagic: return "not an Ember image (bad magic)";
    case ImageStatus::kBadVersion: return "unsupported image version";
    case ImageStatus::kBadHeader: return "bad image header (size or flags)";
    case ImageStatus::kBadTable: return "bad file table (placement, mode or reserved field)";
    case ImageStatus::kBadCrc: return "metadata CRC mismatch";
    case ImageStatus::kBadString: return "bad string reference";
    case ImageStatus::kBadPath: return "bad file path (must be absolute and normalised)";
    case ImageStatus::kDuplicatePath: return "duplicate file path";
    case ImageStatus::kBadFileRange: return "file data outside the image or not 4 KiB-aligned";
    case ImageStatus::kBadExec: return "exec file index out of range";
    case ImageStatus::kTooMany: return "too many files, args or env entries";
  }
  return "unknown image status";
}

uint32_t crc32(const uint8_t* data, uint64_t size, uint32_t crc) {
  crc = ~crc;
  for (uint64_t i = 0; i < size; ++i) {
    crc ^= data[i];
    crc = (crc >> 4) ^ kCrcNibble[crc & 15];
    crc = (crc >> 4) ^ kCrcNibble[crc & 15];
  }
  return ~crc;
}

ImageStatus ImageReader::open(const uint8_t* data, uint64_t size) {
  // Field by field (not `*this = {}`): a struct copy may become a memcpy call,
  // and the guest links no libc.
  base_ = nullptr;
  size_ = 0;
  files_ = args_ = envs_ = strings_ = nullptr;
  file_count_ = arg_count_ = env_count_ = exec_ = 0;
  if (data == nullptr || size < sizeof(ImageHeader)) return ImageStatus::kTruncated;
  for (uint64_t i = 0; i < sizeof(abi::kImageMagic); ++i) {
    if (data[kHdrMagic + i] != uint8_t(abi::kImageMagic[i])) return ImageStatus::kBadMagic;
  }
  if (load32(data + kHdrVersion) != abi::kImageVersion) return ImageStatus::kBadVersion;
  uint64_t header_size = load32(data + kHdrHeaderSize);
  if (header_size != sizeof(ImageHeader) || load32(data + kHdrFlags) != 0) return ImageStatus::kBadHeader;

  uint32_t file_count = load32(data + kHdrFileCount);
  uint32_t arg_count = load32(data + kHdrArgCount);
  uint32_t env_count = load32(data + kHdrEnvCount);
  if (file_count > abi::kImageMaxFiles || arg_count > abi::kImageMaxStrings ||
      env_count > abi::kImageMaxStrings) {
    return ImageStatus::kTooMany;
  }

  // Counts are bounded above, so table_size cannot overflow; the offsets can
  // be anything, so every sum is checked before it is formed.
  uint64_t table_offset = load64(data + kHdrTableOffset);
  uint64_t strings_offset = load64(data + kHdrStringsOffset);
  uint64_t strings_size = load64(data + kHdrStringsSize);
  uint64_t table_size = file_count * kFileEntrySize + (uint64_t(arg_count) + env_count) * kStringRefSize;
  if (table_offset < header_size || table_offset > ~uint64_t(0) - table_size) return ImageStatus::kBadTable;
  uint64_t table_end = table_offset + table_size;
  if (strings_offset < table_end || strings_offset > ~uint64_t(0) - strings_size) return ImageStatus::kBadTable;
  uint64_t strings_end = strings_offset + strings_size;
  if (strings_end > size) return ImageStatus::kTruncated;

  if (crc32(data + table_offset, strings_end - table_offset) != load32(data + kHdrTableCrc)) {
    return ImageStatus::kBadCrc;
  }

  const uint8_t* files = data + table_offset;
  const uint8_t* args = files + file_count * kFileEntrySize;
  const uint8_t* envs = args + arg_count * kStringRefSize;
  const uint8_t* strings = data + strings_offset;

  for (uint32_t i = 0; i < file_count; ++i) {
    const uint8_t* fe = files + i * kFileEntrySize;
    uint32_t mode = load32(fe + kFeMode);
    if (load32(fe + kFeReserved) != 0 || (mode & kModeTypeMask) != kModeRegular) return ImageStatus::kBadTable;
  }
  for (uint32_t i = 0; i < file_count; ++i) {
    if (!string_ok(files + i * kFileEntrySize + kFePath, strings, strings_size)) return ImageStatus::kBadString;
  }
  for (uint32_t i = 0; i < arg_count; ++i) {
    if (!string_ok(args + i * kStringRefSize, strings, strings_size)) return ImageStatus::kBadString;
  }
  for (uint32_t i = 0; i < env_count; ++i) {
    if (!string_ok(envs + i * kStringRefSize, strings, strings_size)) return ImageStatus::kBadString;
  }
  for (uint32_t i = 0; i < file_count; ++i) {
    const uint8_t* ref = files + i * kFileEntrySize + kFePath;
    if (!path_ok(reinterpret_cast<const char*>(strings + load32(ref)), load32(ref + 4))) {
      return ImageStatus::kBadPath;
    }
  }
  // Quadratic (no allocation is possible here): microseconds for the usual
  // handful of files, ~12 ms at the 4096-file limit (host, 4096 short paths of similar length).
  for (uint32_t i = 0; i < file_count; ++i) {
    const uint8_t* a = files + i * kFileEntrySize + kFePath;
    uint32_t a_len = load32(a + 4);
    const char* a_str = reinterpret_cast<const char*>(strings + load32(a));
    for (uint32_t j = i + 1; j < file_count; ++j) {
      const uint8_t* b = files + j * kFileEntrySize + kFePath;
      if (load32(b + 4) == a_len &&
          bytes_equal_backwards(a_str, reinterpret_cast<const char*>(strings + load32(b)), a_len)) {
        return ImageStatus::kDuplicatePath;
      }
    }
  }
  for (uint32_t i = 0; i < file_count; ++i) {
    const uint8_t* fe = files + i * kFileEntrySize;
    uint64_t off = load64(fe + kFeDataOffset);
    uint64_t len = load64(fe + kFeDataSize);
    if (off % abi::kImageDataAlign != 0 || off > size || len > size - off) return ImageStatus::kBadFileRange;
  }
  uint32_t exec = load32(data + kHdrExecFile);
  if (exec >= file_count) return ImageStatus::kBadExec;

  base_ = data;
  size_ = size;
  files_ = files;
  args_ = args;
  envs_ = envs;
  strings_ = strings;
  file_count_ = file_count;
  arg_count_ = arg_count;
  env_count_ = env_count;
  exec_ = exec;
  return ImageStatus::kOk;
}

Bytes ImageReader::string_at(const uint8_t* ref) const {
  return Bytes{reinterpret_cast<const char*>(strings_ + load32(ref)), load32(ref + 4)};
}

ImageFile ImageReader::file(uint32_t i) const {
  if (i >= file_count_) return ImageFile{Bytes{"", 0}, 0, nullptr, 0};
  const uint8_t* fe = files_ + uint64_t(i) * kFileEntrySize;
  return ImageFile{string_at(fe + kFePath), load32(fe + kFeMode), base_ + load64(fe + kFeDataOffset),
                   load64(fe + kFeDataSize)};
}

bool ImageReader::find(const char* path, uint32_t path_len, ImageFile* out) const {
  for (uint32_t i = 0; i < file_count_; ++i) {
    const uint8_t* ref = files_ + uint64_t(i) * kFileEntrySize + kFePath;
    if (load32(ref + 4) == path_len &&
        bytes_equal(reinterpret_cast<const char*>(strings_ + load32(ref)), path, path_len)) {
      if (out != nullptr) *out = file(i);
      return true;
    }
  }
  return false;
}

Bytes ImageReader::arg(uint32_t i) const {
  if (i >= arg_count_) return Bytes{"", 0};
  return string_at(args_ + uint64_t(i) * kStringRefSize);
}

Bytes ImageReader::env(uint32_t i) const {
  if (i >= env_count_) return Bytes{"", 0};
  return string_at(envs_ + uint64_t(i) * kStringRefSize);
}

}  // namespace ember::image
