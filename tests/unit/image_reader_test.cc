// ImageReader: a valid image round-trips, and every malformed image is
// refused with the exact status. Images are laid out here by a tiny
// independent serializer (not the writer), so that bad ones can be made.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

#include "api/image_format.h"
#include "images/image_reader.h"

namespace ember::image {
namespace {

using abi::FileEntry;
using abi::ImageHeader;
using abi::StringRef;

struct RawFile {
  std::string path;
  std::string data;
  uint32_t mode = abi::kFileModeRegular;
};

struct Built {
  std::vector<uint8_t> bytes;
  uint64_t strings_offset = 0;
  uint64_t strings_end = 0;
  std::vector<uint64_t> data_offsets;
};

uint64_t entry_at(uint32_t i) { return sizeof(ImageHeader) + uint64_t(i) * sizeof(FileEntry); }

void set32(std::vector<uint8_t>& b, uint64_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = uint8_t(v >> (8 * i));
}
void set64(std::vector<uint8_t>& b, uint64_t at, uint64_t v) {
  for (int i = 0; i < 8; ++i) b[at + i] = uint8_t(v >> (8 * i));
}
uint32_t get32(const std::vector<uint8_t>& b, uint64_t at) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t(b[at + i]) << (8 * i);
  return v;
}
uint64_t get64(const std::vector<uint8_t>& b, uint64_t at) {
  return uint64_t(get32(b, at)) | uint64_t(get32(b, at + 4)) << 32;
}

// Recomputes table_crc32 from the header's own fields, so that a mutation
// reaches the check after the CRC.
void fix_crc(std::vector<uint8_t>& b) {
  uint64_t table = get64(b, offsetof(ImageHeader, table_offset));
  uint64_t end = get64(b, offsetof(ImageHeader, strings_offset)) + get64(b, offsetof(ImageHeader, strings_size));
  set32(b, offsetof(ImageHeader, table_crc32), crc32(b.data() + table, end - table));
}

Built build(const std::vector<RawFile>& files, const std::vector<std::string>& args,
            const std::vector<std::string>& env, uint32_t exec = 0) {
  Built out;
  std::string strings;
  std::vector<StringRef> refs;
  auto add = [&](const std::string& s) {
    refs.push_back(StringRef{uint32_t(strings.size()), uint32_t(s.size())});
    strings += s;
    strings += '\0';
  };
  for (const auto& f : files) add(f.path);
  for (const auto& a : args) add(a);
  for (const auto& e : env) add(e);
  uint64_t table_size = files.size() * sizeof(FileEntry) + (args.size() + env.size()) * sizeof(StringRef);
  out.strings_offset = sizeof(ImageHeader) + table_size;
  out.strings_end = out.strings_offset + strings.size();
  uint64_t end = (out.strings_end + 4095) / 4096 * 4096;
  uint64_t total = out.strings_end;
  for (const auto& f : files) {
    out.data_offsets.push_back(end);
    total = end + f.data.size();
    end = (total + 4095) / 4096 * 4096;
  }
  auto& b = out.bytes;
  b.assign(total, 0);
  std::memcpy(b.data(), abi::kImageMagic, 8);
  set32(b, offsetof(ImageHeader, version), abi::kImageVersion);
  set32(b, offsetof(ImageHeader, header_size), sizeof(ImageHeader));
  set32(b, offsetof(ImageHeader, file_count), uint32_t(files.size()));
  set32(b, offsetof(ImageHeader, arg_count), uint32_t(args.size()));
  set32(b, offsetof(ImageHeader, env_count), uint32_t(env.size()));
  set32(b, offsetof(ImageHeader, exec_file), exec);
  set64(b, offsetof(ImageHeader, table_offset), sizeof(ImageHeader));
  set64(b, offsetof(ImageHeader, strings_offset), out.strings_offset);
  set64(b, offsetof(ImageHeader, strings_size), strings.size());
  uint64_t at = sizeof(ImageHeader);
  for (size_t i = 0; i < files.size(); ++i, at += sizeof(FileEntry)) {
    set32(b, at + 0, refs[i].offset);
    set32(b, at + 4, refs[i].length);
    set32(b, at + offsetof(FileEntry, mode), files[i].mode);
    set64(b, at + offsetof(FileEntry, data_offset), out.data_offsets[i]);
    set64(b, at + offsetof(FileEntry, data_size), files[i].data.size());
    std::memcpy(b.data() + out.data_offsets[i], files[i].data.data(), files[i].data.size());
  }
  for (size_t i = files.size(); i < refs.size(); ++i, at += sizeof(StringRef)) {
    set32(b, at + 0, refs[i].offset);
    set32(b, at + 4, refs[i].length);
  }
  std::memcpy(b.data() + out.strings_offset, strings.data(), strings.size());
  fix_crc(b);
  return out;
}

Built sample() {
  return build({{"/bin/prog", "\x7f" "ELFprogram-bytes", abi::kFileModeExec},
                {"/etc/config.txt", "key=value\n"},
                {"/data/empty", ""}},
               {"prog", "--flag", ""}, {"HOME=/", "LANG=C"});
}

ImageStatus open_bytes(const std::vector<uint8_t>& b) {
  ImageReader r;
  return r.open(b.data(), b.size());
}

std::string str(Bytes b) { return std::string(b.data, b.size); }

ImageStatus with_path(const std::string& path) {
  return open_bytes(build({{"/bin/prog", "x"}, {path, "y"}}, {"prog"}, {}).bytes);
}

TEST(ImageCrc32, MatchesZlib) {
  const char* s = "123456789";
  EXPECT_EQ(crc32(reinterpret_cast<const uint8_t*>(s), 9), 0xcbf43926u);
  EXPECT_EQ(crc32(nullptr, 0), 0u);
  uint32_t part = crc32(reinterpret_cast<const uint8_t*>(s), 4);
  EXPECT_EQ(crc32(reinterpret_cast<const uint8_t*>(s) + 4, 5, part), 0xcbf43926u);
}

TEST(ImageStatusText, EveryStatusHasDistinctText) {
  std::vector<std::string> seen;
  for (uint32_t i = 0; i <= uint32_t(ImageStatus::kTooMany); ++i) {
    const char* t = image_status_text(ImageStatus(i));
    ASSERT_NE(t, nullptr);
    EXPECT_GT(std::strlen(t), 1u);
    for (const auto& s : seen) EXPECT_NE(s, t);
    seen.push_back(t);
  }
  EXPECT_STREQ(image_status_text(ImageStatus::kTruncated), "truncated image");
}

TEST(ImageReader, RoundTrip) {
  Built img = sample();
  ImageReader r;
  ASSERT_EQ(r.open(img.bytes.data(), img.bytes.size()), ImageStatus::kOk);
  ASSERT_EQ(r.file_count(), 3u);
  EXPECT_EQ(r.exec_index(), 0u);
  ImageFile f = r.file(0);
  EXPECT_EQ(str(f.path), "/bin/prog");
  EXPECT_EQ(f.path.data[f.path.size], '\0');
  EXPECT_EQ(f.mode, abi::kFileModeExec);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(f.data), f.size), "\x7f" "ELFprogram-bytes");
  EXPECT_EQ(f.data, img.bytes.data() + img.data_offsets[0]);
  f = r.file(1);
  EXPECT_EQ(str(f.path), "/etc/config.txt");
  EXPECT_EQ(f.mode, abi::kFileModeRegular);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(f.data), f.size), "key=value\n");
  EXPECT_EQ(r.file(2).size, 0u);
  ASSERT_EQ(r.arg_count(), 3u);
  EXPECT_EQ(str(r.arg(0)), "prog");
  EXPECT_EQ(str(r.arg(1)), "--flag");
  EXPECT_EQ(str(r.arg(2)), "");
  EXPECT_EQ(r.arg(2).data[0], '\0');
  ASSERT_EQ(r.env_count(), 2u);
  EXPECT_EQ(str(r.env(0)), "HOME=/");
  EXPECT_EQ(str(r.env(1)), "LANG=C");
}

TEST(ImageReader, Find) {
  Built img = sample();
  ImageReader r;
  ASSERT_EQ(r.open(img.bytes.data(), img.bytes.size()), ImageStatus::kOk);
  ImageFile f{};
  ASSERT_TRUE(r.find("/etc/config.txt", 15, &f));
  EXPECT_EQ(f.size, 10u);
  EXPECT_TRUE(r.find("/bin/progXYZ", 9, nullptr));  // length bounds the match
  EXPECT_FALSE(r.find("/etc/config", 11, &f));      // a prefix is not a match
  EXPECT_FALSE(r.find("/etc/config.txt/", 16, &f));
  EXPECT_FALSE(r.find("/nope", 5, &f));
  EXPECT_FALSE(r.find("", 0, &f));
}

TEST(ImageReader, UnalignedBufferAndEmptyTables) {
  Built img = sample();
  std::vector<uint8_t> shifted(img.bytes.size() + 3);
  std::memcpy(shifted.data() + 3, img.bytes.data(), img.bytes.size());
  ImageReader r;
  ASSERT_EQ(r.open(shifted.data() + 3, img.bytes.size()), ImageStatus::kOk);
  EXPECT_EQ(str(r.env(1)), "LANG=C");

  Built minimal = build({{"/p", "\x7f" "ELF"}}, {}, {});
  ASSERT_EQ(r.open(minimal.bytes.data(), minimal.bytes.size()), ImageStatus::kOk);
  EXPECT_EQ(r.arg_count(), 0u);
  EXPECT_EQ(r.env_count(), 0u);
}

TEST(ImageReader, TruncatedAtEveryOffset) {
  Built img = sample();
  for (uint64_t cut = 0; cut < img.bytes.size(); ++cut) {
    ImageReader r;
    ImageStatus want = cut < img.strings_end ? ImageStatus::kTruncated : ImageStatus::kBadFileRange;
    ASSERT_EQ(r.open(img.bytes.data(), cut), want) << "cut at " << cut;
    EXPECT_EQ(r.file_count(), 0u);
    EXPECT_EQ(r.arg_count(), 0u);
  }
  ImageReader r;
  EXPECT_EQ(r.open(nullptr, 0), ImageStatus::kTruncated);
}

TEST(ImageReader, FailureLeavesReaderEmpty) {
  Built img = sample();
  ImageReader r;
  ASSERT_EQ(r.open(img.bytes.data(), img.bytes.size()), ImageStatus::kOk);
  img.bytes[0] = 'X';
  EXPECT_EQ(r.open(img.bytes.data(), img.bytes.size()), ImageStatus::kBadMagic);
  EXPECT_EQ(r.file_count(), 0u);
  EXPECT_EQ(r.env_count(), 0u);
  EXPECT_EQ(r.file(0).size, 0u);
  EXPECT_FALSE(r.find("/bin/prog", 9, nullptr));
}

TEST(ImageReader, BadMagicVersionHeader) {
  for (int i = 0; i < 8; ++i) {
    Built img = sample();
    img.bytes[i] ^= 0x20;
    EXPECT_EQ(open_bytes(img.bytes), ImageStatus::kBadMagic) << i;
  }
  for (uint32_t v : {0u, 2u, 0x01000000u, 0xffffffffu}) {
    Built img = sample();
    set32(img.bytes, offsetof(ImageHeader, version), v);
    EXPECT_EQ(open_bytes(img.bytes), ImageStatus::kBadVersion) << v;
  }
  for (uint32_t hs : {0u, 63u, 65u, 128u, 0xffffffffu}) {
    Built img = sample();
    set32(img.bytes, offsetof(ImageHeader, header_size), hs);
    EXPECT_EQ(open_bytes(img.bytes), ImageStatus::kBadHeader) << hs;
  }
  Built img = sample();
  set32(img.bytes, offsetof(ImageHeader, flags), 1);
  EXPECT_EQ(open_bytes(img.bytes), ImageStatus::kBadHeader);
}

TEST(ImageReader, HugeCounts) {
  for (size_t field : {offsetof(ImageHeader, file_count), offsetof(ImageHeader, arg_count),
                       offsetof(ImageHeader, env_count)}) {
    for (uint32_t n : {4097u, 0x80000000u, 0xffffffffu}) {
      Built img = sample();
      set32(img.bytes, field, n);
      EXPECT_EQ(open_bytes(img.bytes), ImageStatus::kTooMany) << field << " " << n;
    }
  }
  // At the limit the count is accepted, and then the table no longer fits
  // before the strings.
  Built img = sample();
  set32(img.bytes, offsetof(ImageHeader, file_count), abi::kImageMaxFiles);
  EXPECT_EQ(open_bytes(img.bytes), ImageStatus::kBadTable);
  // ... or, with the strings moved out of the way, in the image.
  set64(img.bytes, offsetof(ImageHeader, strings_offset), 1u << 20);
  EXPECT_EQ(open_bytes(img.bytes), ImageStatus::kTruncated);
}

TEST(ImageReader, TableAndStringPlacement) {
  struct Case {
    uint64_t table, strings_off, strings_size;
    ImageStatus want;
  };
  Built base = sample();
  uint64_t so = base.strings_offset;
  uint64_t ss = base.strings_end - base.strings_offset;
  const uint64_t kMax = ~uint64_t(0);
  const Case cases[] = {
      {0, so, ss, ImageStatus::kBadTable},                  // overlaps the header
      {63, so, ss, ImageStatus::kBadTable},
      {kMax, so, ss, ImageStatus::kBadTable},               // table end overflows
      {kMax - 8, so, ss, ImageStatus::kBadTable},
      {64, so - 1, ss, ImageStatus::kBadTable},             // strings overlap the table
      {64, 0, ss, ImageStatus::kBadTable},
      {64, so, kMax, ImageStatus::kBadTable},               // strings end overflows
      {64, kMax, 1, ImageStatus::kBadTable},
      {64, kMax - 4, 4, ImageStatus::kTruncated},           // ends at 2^64-1: past the image
      {64, so, base.bytes.size(), ImageStatus::kTruncated},
      {64, 1ull << 40, ss, ImageStatus::kTruncated},
      {1ull << 40, (1ull << 40) + 4096, ss, ImageStatus::kTruncated},
      {kMax - 4096, kMax - 8, 8, ImageStatus::kTruncated},  // huge but no overflow
  };
  for (const Case& c : cases) {
    Built img = sample();
    set64(img.bytes, offsetof(ImageHeader, table_offset), c.table);
    set64(img.bytes, offsetof(ImageHeader, strings_offset), c.strings_off);
    set64(img.bytes, offsetof(ImageHeader, strings_size), c.strings_size);
    EXPECT_EQ(open_bytes(img.bytes), c.want) << c.table << " " << c.strings_off << " " << c.strings_size;
  }
}

TEST(ImageReader, CrcCoversMetadataOnly) {
  Built img = sample();
  for (uint64_t at : {uint64_t(64), img.strings_offset, img.strings_end - 1}) {
    std::vector<uint8_t> b = img.bytes;
    b[at] ^= 1;
    EXPECT_EQ(open_bytes(b), ImageStatus::kBadCrc) << at;
  }
  std::vector<uint8_t> b = img.bytes;
  b[offsetof(ImageHeader, table_crc32)] ^= 0x80;
  EXPECT_EQ(open_bytes(b), ImageStatus::kBadCrc);
  // File data and the padding before it are not covered.
  b = img.bytes;
  b[img.data_offsets[0]] ^= 0xff;
  b[img.strings_end] = 0x55;
  EXPECT_EQ(open_bytes(b), ImageStatus::kOk);
}

TEST(ImageReader, FileModeAndReserved) {
  for (uint32_t mode : {0040755u, 0120777u, 0020644u, 0u, 0755u}) {
    Built img = sample();
    set32(img.bytes, entry_at(1) + offsetof(FileEntry, mode), mode);
    fix_crc(img.bytes);
    EXPECT_EQ(open_bytes(img.bytes), ImageStatus::kBadTable) << std::oct << mode;
  }
  Built img = sample();
  set32(img.bytes, entry_at(2) + offsetof(FileEntry, reserved), 1);
  fix_crc(img.bytes);
  EXPECT_EQ(open_bytes(img.bytes), ImageStatus::kBadTable);
}

TEST(ImageReader, BadStringRefs) {
  Built base = sample();
  const uint32_t ss = uint32_t(base.strings_end - base.strings_offset);
  const uint64_t arg0 = entry_at(3);  // StringRefs follow the 3 file entries
  const uint64_t env1 = arg0 + 4 * sizeof(StringRef);
  struct Case {
    uint64_t ref_at;
    uint32_t offset, length;
  };
  const Case cases[] = {
      {entry_at(0), ss, 0},                    // offset at the end: no room for the NUL
      {entry_at(0), ss + 100, 0},
      {entry_at(1), 0, ss},                    // NUL would be past the end
      {entry_at(1), 1, ss - 1},
      {entry_at(1), 0xffffffffu, 0xffffffffu}, // u32 sums wrap
      {entry_at(2), 0x10, 0xfffffff0u},
      {arg0, 0, 3},                            // "/bi" is followed by 'n', not NUL
      {arg0, 0, 11},                           // "/bin/prog\0/" holds a NUL inside
      {env1, ss - 1, 1},
  };
  for (const Case& c : cases) {
    Built img = sample();
    set32(img.bytes, c.ref_at, c.offset);
    set32(img.bytes, c.ref_at + 4, c.length);
    fix_crc(img.bytes);
    EXPECT_EQ(open_bytes(img.bytes), ImageStatus::kBadString) << c.ref_at << " " << c.offset << " " << c.length;
  }
  // The last string loses its NUL.
  Built img = sample();
  img.bytes[img.strings_end - 1] = 'x';
  fix_crc(img.bytes);
  EXPECT_EQ(open_bytes(img.bytes), ImageStatus::kBadString);
  // An empty string at the very end is fine: it is just the NUL.
  img = sample();
  set32(img.bytes, env1, ss - 1);
  set32(img.bytes, env1 + 4, 0);
  fix_crc(img.bytes);
  EXPECT_EQ(open_bytes(img.bytes), ImageStatus::kOk);
}

TEST(ImageReader, BadPaths) {
  const std::string bad[] = {"rel", "", "/", "//", "/a/../b", "/a//b", "/a/", "/.", "/..", "/a/.",
                             "/a/..", "/./a", "/a/./b", "a/b", "//a", std::string("/") + std::string(4095, 'x')};
  for (const auto& p : bad) EXPECT_EQ(with_path(p), ImageStatus::kBadPath) << "'" << p.substr(0, 20) << "'";
  const std::string good[] = {"/a", "/a/b", "/.a", "/..a", "/a..", "/.../x", "/a/.b/c", "/a b/c:d",
                              std::string("/") + std::string(4094, 'x')};
  for (const auto& p : good) EXPECT_EQ(with_path(p), ImageStatus::kOk) << "'" << p.substr(0, 20) << "'";
}

TEST(ImageReader, DuplicatePaths) {
  EXPECT_EQ(open_bytes(build({{"/a/b", "1"}, {"/a/bc", "2"}, {"/a/b", "3"}}, {}, {}).bytes),
            ImageStatus::kDuplicatePath);
  EXPECT_EQ(open_bytes(build({{"/x", "1"}, {"/y", "2"}, {"/y", "3"}}, {}, {}).bytes), ImageStatus::kDuplicatePath);
  EXPECT_EQ(open_bytes(build({{"/a/b", "1"}, {"/a/c", "2"}, {"/a/bb", "3"}, {"/b/a", "4"}}, {}, {}).bytes),
            ImageStatus::kOk);
  // Paths are checked before duplicates.
  EXPECT_EQ(open_bytes(build({{"/a", "1"}, {"/a", "2"}, {"/b/", "3"}}, {}, {}).bytes), ImageStatus::kBadPath);
}

TEST(ImageReader, BadFileRanges) {
  Built base = sample();
  const uint64_t size = base.bytes.size();
  const uint64_t kMax = ~uint64_t(0);
  struct Case {
    uint64_t offset, length;
    ImageStatus want;
  };
  const Case cases[] = {
      {base.data_offsets[1] + 1, 10, ImageStatus::kBadFileRange},  // unaligned
      {base.data_offsets[1] + 2048, 10, ImageStatus::kBadFileRange},
      {(size / 4096 + 1) * 4096, 0, ImageStatus::kBadFileRange},  // past the end
      {1ull << 40, 1, ImageStatus::kBadFileRange},
      {base.data_offsets[1], size, ImageStatus::kBadFileRange},      // too long
      {base.data_offsets[1], kMax, ImageStatus::kBadFileRange},
      {kMax - 4095, 8192, ImageStatus::kBadFileRange},               // offset + size wraps
      {kMax & ~uint64_t(4095), 4096, ImageStatus::kBadFileRange},
      {0, size, ImageStatus::kOk},                                    // the whole image
      {0, 0, ImageStatus::kOk},
      {base.data_offsets[2], size - base.data_offsets[2], ImageStatus::kOk},
  };
  for (const Case& c : cases) {
    Built img = sample();
    set64(img.bytes, entry_at(1) + offsetof(FileEntry, data_offset), c.offset);
    set64(img.bytes, entry_at(1) + offsetof(FileEntry, data_size), c.length);
    fix_crc(img.bytes);
    EXPECT_EQ(open_bytes(img.bytes), c.want) << c.offset << " " << c.length;
  }
}

TEST(ImageReader, ExecIndex) {
  for (uint32_t exec : {3u, 4u, 4096u, 0xffffffffu}) {
    Built img = sample();
    set32(img.bytes, offsetof(ImageHeader, exec_file), exec);
    EXPECT_EQ(open_bytes(img.bytes), ImageStatus::kBadExec) << exec;  // exec_file is not under the CRC
  }
  Built img = sample();
  set32(img.bytes, offsetof(ImageHeader, exec_file), 2);
  ImageReader r;
  ASSERT_EQ(r.open(img.bytes.data(), img.bytes.size()), ImageStatus::kOk);
  EXPECT_EQ(r.exec_index(), 2u);
  // No files at all: nothing to run.
  EXPECT_EQ(open_bytes(build({}, {"x"}, {}).bytes), ImageStatus::kBadExec);
}

}  // namespace
}  // namespace ember::image
