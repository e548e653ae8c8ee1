// The function image for `ember-vmm run PROGRAM`, built without copying the
// program: the image's metadata (header, file table, strings) is written into
// anonymous pages, and the program file itself is mapped (MAP_PRIVATE,
// read-only, from the page cache) right behind it, at the 4 KiB-aligned data
// offset the image format prescribes. The result is one contiguous read-only
// host range that becomes the image memory slot.
//
// Packing a 750 KB glibc program with images/image_writer's build_image()
// (read, copy, write to a memfd) costs ~1 ms here; this costs ~30 us. The
// layout is the one build_image() produces (program first, strings: paths,
// args, env), and the result is checked with ImageReader like any image.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "base/fd.h"
#include "base/result.h"

namespace ember {

struct MappedImage {
  Mapping mapping;    // page-rounded, read-only
  uint64_t size = 0;  // image bytes (the format's view; <= mapping.size())
  const uint8_t* data() const { return mapping.bytes(); }
};

struct ProgramImageSpec {
  std::string program;     // host path of an ELF program
  std::string guest_path;  // absolute; normalised here
  std::vector<std::string> args;  // argv, argv[0] included
  std::vector<std::string> env;   // KEY=VALUE
  // More files (image::ImageSpec's files and trees): packed with
  // image::build_image, as a dynamic program is.
  std::vector<std::pair<std::string, std::string>> files, trees;
};

Result<MappedImage> map_program_image(const ProgramImageSpec& spec);

// An image file (`--image IMG`), mapped read-only and validated.
Result<MappedImage> map_image_file(const std::string& path);

}  // namespace ember
