// The zero-copy PROGRAM image (vmm/program_image.h) is byte for byte the
// image images/image_writer's build_image() makes from the same spec, and
// both it and --image files are refused with clear errors when wrong.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "images/image_reader.h"
#include "images/image_writer.h"
#include "tests/unit/test_temp_dir.h"
#include "tests/unit/vmm_test_elf.h"
#include "vmm/program_image.h"

namespace ember {
namespace {

class ProgramImageTest : public ::testing::Test {
 protected:
  std::string write(const std::string& name, const std::string& content) {
    const std::string p = dir_ + "/" + name;
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }
  ember::testing::TempDir tmp_{"ember-vmm-image-test"};
  const std::string dir_ = tmp_.path();
};

TEST_F(ProgramImageTest, SameBytesAsBuildImage) {
  for (size_t size : {size_t{120}, size_t{4096}, size_t{4097}, size_t{100000}}) {
    std::string content = testing::static_program_elf();
    for (size_t i = content.size(); i < size; i++) content.push_back(static_cast<char>(i * 7));
    const std::string prog = write("prog", content);
    ProgramImageSpec spec{prog, "/bin/prog", {prog, "arg one", ""}, {"A=1", "EMPTY="}};
    auto mine = map_program_image(spec);
    ASSERT_TRUE(mine.ok()) << mine.message();
    image::ImageSpec ref;
    ref.exec_host_path = prog;
    ref.exec_guest_path = "/bin/prog";
    ref.args = spec.args;
    ref.env = spec.env;
    auto theirs = image::build_image(ref);
    ASSERT_TRUE(theirs.ok()) << theirs.message();
    ASSERT_EQ(mine->size, theirs->size()) << size;
    EXPECT_EQ(std::memcmp(mine->data(), theirs->data(), theirs->size()), 0) << size;
    EXPECT_EQ(mine->mapping.size() % 4096, 0u);
    // The tail of the last page reads as zeroes (the guest may look).
    for (uint64_t i = mine->size; i < mine->mapping.size(); i++) ASSERT_EQ(mine->data()[i], 0) << i;
  }
}

TEST_F(ProgramImageTest, RefusesWhatIsNotAnElfProgram) {
  auto r = map_program_image(ProgramImageSpec{write("script.sh", "#!/bin/sh\n"), "/bin/s", {"s"}, {}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.message().find("not an ELF"), std::string::npos) << r.message();
  r = map_program_image(ProgramImageSpec{dir_ + "/missing", "/bin/m", {"m"}, {}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.message().find("No such file"), std::string::npos) << r.message();
  r = map_program_image(ProgramImageSpec{dir_, "/bin/d", {"d"}, {}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.message().find("not a regular file"), std::string::npos) << r.message();
  r = map_program_image(ProgramImageSpec{write("empty", ""), "/bin/e", {"e"}, {}});
  EXPECT_FALSE(r.ok());
  r = map_program_image(ProgramImageSpec{write("p", testing::static_program_elf()), "relative", {"e"}, {}});
  EXPECT_FALSE(r.ok());
}

TEST_F(ProgramImageTest, ADynamicProgramComesWithItsLoaderAndLibraries) {
  auto r = map_program_image(ProgramImageSpec{"/bin/true", "/bin/t", {"t"}, {}});  // Debian's is dynamic
  ASSERT_TRUE(r.ok()) << r.message();
  image::ImageReader reader;
  ASSERT_EQ(reader.open(r->data(), r->size), image::ImageStatus::kOk);
  std::vector<std::string> paths;
  for (uint32_t i = 0; i < reader.file_count(); i++) paths.emplace_back(reader.file(i).path.data, reader.file(i).path.size);
  EXPECT_EQ(paths.at(reader.exec_index()), "/bin/t");
  EXPECT_NE(std::find(paths.begin(), paths.end(), "/lib64/ld-linux-x86-64.so.2"), paths.end());
  EXPECT_NE(std::find(paths.begin(), paths.end(), "/lib/x86_64-linux-gnu/libc.so.6"), paths.end()) << paths.size();
}

TEST_F(ProgramImageTest, ImageFiles) {
  const std::string prog = write("prog", testing::static_program_elf(5004));
  image::ImageSpec spec;
  spec.exec_host_path = prog;
  const std::string img = dir_ + "/fn.img";
  ASSERT_TRUE(image::write_image_file(img, spec).ok());
  auto r = map_image_file(img);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(std::memcmp(r->data(), "EMBERIMG", 8), 0);

  ASSERT_EQ(::truncate(img.c_str(), 100), 0);
  r = map_image_file(img);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.message(), "image " + img + ": truncated image");
  r = map_image_file(write("garbage.img", std::string(8192, 'x')));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.message().find("image "), std::string::npos);
  r = map_image_file(write("zero.img", ""));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.message().find("empty file"), std::string::npos);
  r = map_image_file(dir_ + "/none.img");
  EXPECT_FALSE(r.ok());
}

TEST_F(ProgramImageTest, ImageWhoseProgramIsNotElf) {
  // A valid image built around an ELF, then its program's magic broken.
  const std::string prog = write("prog", testing::static_program_elf(200));
  image::ImageSpec spec;
  spec.exec_host_path = prog;
  spec.exec_guest_path = "/bin/x";
  auto bytes = image::build_image(spec);
  ASSERT_TRUE(bytes.ok());
  (*bytes)[4096] = 'X';  // first data byte (data is 4 KiB-aligned, metadata fits in one page)
  const std::string img = write("bad.img", std::string(bytes->begin(), bytes->end()));
  auto r = map_image_file(img);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.message().find("program /bin/x is not an ELF file"), std::string::npos) << r.message();
}

}  // namespace
}  // namespace ember
