// build_image / write_image_file: what the writer produces is read back
// unchanged by ImageReader, and every bad spec is refused with an error that
// names the offending file or path.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "api/image_format.h"
#include "images/image_reader.h"
#include "images/image_writer.h"
#include "tests/unit/test_temp_dir.h"
#include "tests/unit/vmm_test_elf.h"

namespace ember::image {
namespace {

class ImageWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    prog_ = write("prog", ember::testing::static_program_elf(5007), 0755);
    data_ = write("data.txt", "hello data\n", 0644);
  }

  std::string write(const std::string& name, const std::string& content, mode_t mode) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path, std::ios::binary) << content;
    ::chmod(path.c_str(), mode);
    return path;
  }

  static std::string str(Bytes b) { return std::string(b.data, b.size); }
  static std::string content(const ImageFile& f) { return std::string(reinterpret_cast<const char*>(f.data), f.size); }

  ember::testing::TempDir tmp_{"ember-image-test"};
  const std::string dir_ = tmp_.path();
  std::string prog_, data_;
};

TEST_F(ImageWriterTest, RoundTripWithDefaults) {
  ImageSpec spec;
  spec.exec_host_path = prog_;
  auto img = build_image(spec);
  ASSERT_TRUE(img.ok()) << img.message();
  ImageReader r;
  ASSERT_EQ(r.open(img->data(), img->size()), ImageStatus::kOk);
  ASSERT_EQ(r.file_count(), 1u);
  EXPECT_EQ(r.exec_index(), 0u);
  ImageFile f = r.file(0);
  EXPECT_EQ(str(f.path), "/bin/prog");
  EXPECT_EQ(f.mode, abi::kFileModeExec);
  EXPECT_EQ(f.size, 5007u);
  EXPECT_EQ(uint64_t(f.data - img->data()) % abi::kImageDataAlign, 0u);
  EXPECT_EQ(f.data[0], 0x7f);
  ASSERT_EQ(r.arg_count(), 1u);
  EXPECT_EQ(str(r.arg(0)), "/bin/prog");  // argv[0] defaults to the guest path
  EXPECT_EQ(r.env_count(), 0u);
  EXPECT_EQ(img->size(), uint64_t(f.data - img->data()) + f.size);  // ends at the last data byte
}

TEST_F(ImageWriterTest, RoundTripFull) {
  std::string empty = write("empty", "", 0644);
  std::string script = write("run.sh", "#!/bin/sh\n", 0750);
  ImageSpec spec;
  spec.exec_host_path = prog_;
  spec.exec_guest_path = "//usr/./local/bin//tool/";
  spec.files = {{data_, "/data/in.txt"}, {script, "/etc//run.sh"}, {empty, "/data/./empty"}};
  spec.args = {"tool", "--x", ""};
  spec.env = {"A=1", "PATH=/usr/bin:/bin", "EMPTY="};
  auto img = build_image(spec);
  ASSERT_TRUE(img.ok()) << img.message();
  ImageReader r;
  ASSERT_EQ(r.open(img->data(), img->size()), ImageStatus::kOk);
  ASSERT_EQ(r.file_count(), 4u);
  EXPECT_EQ(str(r.file(r.exec_index()).path), "/usr/local/bin/tool");
  ImageFile f{};
  ASSERT_TRUE(r.find("/data/in.txt", 12, &f));
  EXPECT_EQ(content(f), "hello data\n");
  EXPECT_EQ(f.mode, abi::kFileModeRegular);
  ASSERT_TRUE(r.find("/etc/run.sh", 11, &f));
  EXPECT_EQ(content(f), "#!/bin/sh\n");
  EXPECT_EQ(f.mode, abi::kFileModeExec);  // host x bits kept
  ASSERT_TRUE(r.find("/data/empty", 11, &f));
  EXPECT_EQ(f.size, 0u);
  for (uint32_t i = 0; i < r.file_count(); ++i) {
    EXPECT_EQ(uint64_t(r.file(i).data - img->data()) % abi::kImageDataAlign, 0u) << i;
  }
  ASSERT_EQ(r.arg_count(), 3u);
  EXPECT_EQ(str(r.arg(0)), "tool");
  EXPECT_EQ(str(r.arg(2)), "");
  ASSERT_EQ(r.env_count(), 3u);
  EXPECT_EQ(str(r.env(1)), "PATH=/usr/bin:/bin");
  EXPECT_EQ(str(r.env(2)), "EMPTY=");
  // Deterministic: the same spec gives the same bytes.
  auto again = build_image(spec);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *img);
}

TEST_F(ImageWriterTest, TreesBringEveryRegularFileBelowThem) {
  const std::string t = dir_ + "/tree";
  ASSERT_EQ(::mkdir(t.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((t + "/sub").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((t + "/sub/deeper").c_str(), 0755), 0);
  write("tree/a.txt", "a", 0644);
  write("tree/sub/b.py", "b", 0644);
  write("tree/sub/deeper/c", "c", 0755);
  write("outside.txt", "via a link", 0644);
  ASSERT_EQ(::symlink((dir_ + "/outside.txt").c_str(), (t + "/link.txt").c_str()), 0);
  ASSERT_EQ(::symlink((t + "/sub").c_str(), (t + "/dirlink").c_str()), 0);  // not followed: no loop, no copies
  ASSERT_EQ(::symlink("/nonexistent", (t + "/dangling").c_str()), 0);
  ASSERT_EQ(::mkfifo((t + "/fifo").c_str(), 0644), 0);
  ImageSpec spec;
  spec.exec_host_path = prog_;
  spec.files = {{data_, "/lib/py/a.txt"}};  // a --file wins over the tree
  spec.trees = {{t, "/lib/py"}, {t + "/sub", "/lib/py/sub"}};  // the second adds nothing new
  auto img = build_image(spec);
  ASSERT_TRUE(img.ok()) << img.message();
  ImageReader r;
  ASSERT_EQ(r.open(img->data(), img->size()), ImageStatus::kOk);
  std::map<std::string, std::string> files;
  for (uint32_t i = 0; i < r.file_count(); i++) files[str(r.file(i).path)] = content(r.file(i));
  EXPECT_EQ(files.size(), 5u);
  EXPECT_EQ(files["/lib/py/a.txt"], "hello data\n");
  EXPECT_EQ(files["/lib/py/sub/b.py"], "b");
  EXPECT_EQ(files["/lib/py/sub/deeper/c"], "c");
  EXPECT_EQ(files["/lib/py/link.txt"], "via a link");
  EXPECT_EQ(files.count("/lib/py/dirlink/b.py"), 0u);
  ImageSpec bad = spec;
  bad.trees = {{dir_ + "/missing", "/x"}};
  EXPECT_NE(build_image(bad).message().find("not a directory"), std::string::npos);
  bad.trees = {{t, "relative"}};
  EXPECT_FALSE(build_image(bad).ok());
}

TEST_F(ImageWriterTest, HostGuestPairs) {
  EXPECT_EQ(*parse_host_guest("data/in.txt:/data/in.txt"), std::make_pair(std::string("data/in.txt"), std::string("/data/in.txt")));
  EXPECT_EQ(*parse_host_guest("/usr/lib/x"), std::make_pair(std::string("/usr/lib/x"), std::string("/usr/lib/x")));
  EXPECT_EQ(parse_host_guest("c:/x")->first, "c");  // split at the first ":/"
  for (const char* bad : {"", "rel", "a:b", ":/x"}) EXPECT_FALSE(parse_host_guest(bad).ok()) << bad;
}

TEST_F(ImageWriterTest, NormalizeGuestPath) {
  EXPECT_EQ(*normalize_guest_path("/a/b"), "/a/b");
  EXPECT_EQ(*normalize_guest_path("//a///b/"), "/a/b");
  EXPECT_EQ(*normalize_guest_path("/./a/./b/."), "/a/b");
  EXPECT_EQ(*normalize_guest_path("/..a/b.."), "/..a/b..");
  for (const std::string& bad : {std::string("rel"), std::string(""), std::string("/"), std::string("//./"),
                                 std::string("/a/../b"), std::string("/.."), std::string("a/b"),
                                 std::string("/a\0b", 4), "/" + std::string(4095, 'x')}) {
    auto r = normalize_guest_path(bad);
    EXPECT_FALSE(r.ok()) << bad.substr(0, 20);
  }
  EXPECT_TRUE(normalize_guest_path("/" + std::string(4094, 'x')).ok());
  EXPECT_NE(normalize_guest_path("x/y").message().find("'x/y' is not absolute"), std::string::npos);
  EXPECT_NE(normalize_guest_path("/a/../b").message().find(".."), std::string::npos);
}

TEST_F(ImageWriterTest, RejectsBadSpecs) {
  auto expect_error = [&](const ImageSpec& spec, const std::string& needle) {
    auto r = build_image(spec);
    ASSERT_FALSE(r.ok()) << "expected an error containing '" << needle << "'";
    EXPECT_NE(r.message().find(needle), std::string::npos) << r.message();
  };
  ImageSpec spec;
  expect_error(spec, "no program");

  spec.exec_host_path = data_;
  expect_error(spec, data_ + " is not an ELF file");
  spec.exec_host_path = write("tiny", "\x7f" "E", 0755);
  expect_error(spec, "tiny is not an ELF file");
  spec.exec_host_path = dir_ + "/missing";
  expect_error(spec, dir_ + "/missing: No such file or directory");
  spec.exec_host_path = dir_;
  expect_error(spec, dir_ + ": not a regular file");
  {
    // A dynamic program whose loader this host lacks.
    testing::TestElf e;
    testing::TestSegment interp;
    interp.type = PT_INTERP;
    interp.filesz = interp.memsz = 20;
    e.segments.insert(e.segments.begin(), interp);
    std::vector<uint8_t> b = e.build();
    Elf64_Phdr ph;
    std::memcpy(&ph, b.data() + sizeof(Elf64_Ehdr), sizeof ph);
    std::memcpy(b.data() + ph.p_offset, "/nonexistent/ld.so", 19);
    const std::string path = dir_ + "/dyn";
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    ImageSpec d;
    d.exec_host_path = path;
    expect_error(d, "its loader /nonexistent/ld.so is not on this host");
    d.with_dependencies = false;  // the image must bring it then: accepted
    EXPECT_TRUE(build_image(d).ok());
  }

  spec.exec_host_path = prog_;
  spec.exec_guest_path = "bin/prog";
  expect_error(spec, "not absolute");
  spec.exec_guest_path = "/bin/../prog";
  expect_error(spec, "'..'");
  spec.exec_guest_path.clear();

  spec.files = {{data_, "relative.txt"}};
  expect_error(spec, "file " + data_ + ": guest path 'relative.txt' is not absolute");
  spec.files = {{data_, "/a/../b"}};
  expect_error(spec, "contains '..'");
  spec.files = {{data_, "/d/x"}, {prog_, "/d//x/"}};
  expect_error(spec, "duplicate guest path /d/x (from " + data_ + " and " + prog_ + ")");
  spec.files = {{data_, "/bin/prog"}};
  expect_error(spec, "duplicate guest path /bin/prog");
  spec.files = {{dir_ + "/nope", "/nope"}};
  expect_error(spec, dir_ + "/nope: No such file");
  spec.files.clear();

  spec.env = {"NOEQUALS"};
  expect_error(spec, "env entry 'NOEQUALS' is not KEY=VALUE");
  spec.env = {"=v"};
  expect_error(spec, "not KEY=VALUE");
  spec.env.clear();
  spec.args = {std::string("a\0b", 3)};
  expect_error(spec, "NUL");
  spec.args.clear();

  spec.files.assign(abi::kImageMaxFiles, {data_, "/x"});
  expect_error(spec, "too many files: 4097");
  spec.files.clear();
  spec.args.assign(abi::kImageMaxStrings + 1, "a");
  expect_error(spec, "too many args");
  spec.args.clear();
  spec.env.assign(abi::kImageMaxStrings + 1, "a=b");
  expect_error(spec, "too many env");
}

TEST_F(ImageWriterTest, AtLimits) {
  ImageSpec spec;
  spec.exec_host_path = prog_;
  for (uint32_t i = 1; i < abi::kImageMaxFiles; ++i) spec.files.push_back({data_, "/f/" + std::to_string(i)});
  spec.args.assign(abi::kImageMaxStrings, "a");
  spec.env.assign(abi::kImageMaxStrings, "K=V");
  auto img = build_image(spec);
  ASSERT_TRUE(img.ok()) << img.message();
  ImageReader r;
  ASSERT_EQ(r.open(img->data(), img->size()), ImageStatus::kOk);
  EXPECT_EQ(r.file_count(), abi::kImageMaxFiles);
  EXPECT_EQ(r.env_count(), abi::kImageMaxStrings);
}

TEST_F(ImageWriterTest, WriteImageFile) {
  ImageSpec spec;
  spec.exec_host_path = prog_;
  spec.files = {{data_, "/in"}};
  std::string out = dir_ + "/out.img";
  auto w = write_image_file(out, spec);
  ASSERT_TRUE(w.ok()) << w.message();
  auto bytes = read_whole_file(out);
  ASSERT_TRUE(bytes.ok()) << bytes.message();
  auto built = build_image(spec);
  ASSERT_TRUE(built.ok());
  EXPECT_EQ(*bytes, *built);
  // Only the image is left behind, no temporary file.
  auto listing = std::system(("test $(ls '" + dir_ + "' | grep -c tmp) -eq 0").c_str());
  EXPECT_EQ(listing, 0);

  auto bad = write_image_file(dir_ + "/no/such/dir/x.img", spec);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("cannot create " + dir_ + "/no/such/dir/x.img.tmp."), std::string::npos)
      << bad.message();
  // A bad spec writes nothing.
  spec.exec_host_path = data_;
  EXPECT_FALSE(write_image_file(dir_ + "/never.img", spec).ok());
  EXPECT_NE(::access((dir_ + "/never.img").c_str(), F_OK), 0);
}

}  // namespace
}  // namespace ember::image
