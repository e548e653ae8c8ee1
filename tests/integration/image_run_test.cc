// Images built with `ember-image pack`: the program reads files packed with it,
// and malformed inputs get a clear one-line error, never a crash or a hang.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "tests/integration/vm_fixture.h"

namespace ember::testing {
namespace {

namespace fs = std::filesystem;

class ImageRun : public VmTest {
 protected:
  void SetUp() override {
    VmTest::SetUp();
    if (IsSkipped()) return;
    dir_ = fs::temp_directory_path() / ("ember-image-run-" + std::to_string(getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  std::string write_file(const std::string& name, const std::string& content) {
    auto p = dir_ / name;
    std::ofstream(p, std::ios::binary) << content;
    return p.string();
  }
  std::string pack(const std::vector<std::string>& extra) {
    std::string out = (dir_ / "fn.img").string();
    std::vector<std::string> argv = {bin("ember-image"), "pack", "-o", out};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto r = run_process(argv);
    EXPECT_EQ(r.status, 0) << r.err;
    return out;
  }
  fs::path dir_;
};

TEST_F(ImageRun, ProgramReadsPackedFile) {
  std::string data;
  for (int i = 0; i < 100000; i++) data += static_cast<char>('a' + i % 26);
  std::string host = write_file("data.txt", data);
  std::string img = pack({"--exec", guest_program("file_read-musl"), "--file", host + ":/data/input.txt", "--arg",
                          "file_read", "--arg", "/data/input.txt"});
  auto r = run_process({bin("ember-vmm"), "run", "--timeout-ms", "30000", "--image", img});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("size=100000"), std::string::npos) << r.out;
  // The same program and file, read on the host, give the same report.
  auto host_run = run_process({guest_program("file_read-musl"), host});
  ASSERT_EQ(host_run.status, 0) << host_run.err;
  EXPECT_EQ(r.out, host_run.out);
}

TEST_F(ImageRun, MissingFileInImageIsAnErrorForTheProgram) {
  std::string img = pack({"--exec", guest_program("file_read-glibc"), "--arg", "file_read", "--arg", "/nope"});
  auto r = run_process({bin("ember-vmm"), "run", "--timeout-ms", "30000", "--image", img});
  EXPECT_NE(r.status, 0);
}

TEST_F(ImageRun, TruncatedImageIsRejected) {
  std::string img = pack({"--exec", guest_program("hello-musl")});
  fs::resize_file(img, 100);
  auto r = run_process({bin("ember-vmm"), "run", "--timeout-ms", "10000", "--image", img});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("truncated"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line: " << r.err;
}

TEST_F(ImageRun, GarbageImageIsRejected) {
  std::string img = write_file("garbage.img", std::string(8192, 'x'));
  auto r = run_process({bin("ember-vmm"), "run", "--timeout-ms", "10000", "--image", img});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("image"), std::string::npos) << r.err;
}

TEST_F(ImageRun, MissingKernelIsAClearError) {
  auto r = run_process({bin("ember-vmm"), "run", "--kernel", (dir_ / "no-such-kernel").string(),
                        guest_program("hello-musl")});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("no-such-kernel"), std::string::npos) << r.err;
}

TEST_F(ImageRun, NonElfKernelIsAClearError) {
  std::string k = write_file("kernel.bin", std::string(4096, '\x90'));
  auto r = run_process({bin("ember-vmm"), "run", "--kernel", k, guest_program("hello-musl")});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("ELF"), std::string::npos) << r.err;
}

TEST_F(ImageRun, ProgramThatIsNotElfIsAClearError) {
  std::string p = write_file("script.sh", "#!/bin/sh\necho hi\n");
  auto r = run_process({bin("ember-vmm"), "run", p});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("ELF"), std::string::npos) << r.err;
}

TEST_F(ImageRun, HelpTeaches) {
  auto r = run_process({bin("ember-vmm"), "run", "--help"});
  EXPECT_EQ(r.status, 0);
  for (const char* word : {"--kernel", "--mem-mib", "--image", "--timeout-ms", "--env"})
    EXPECT_NE(r.out.find(word), std::string::npos) << word;
}

TEST_F(ImageRun, TimeoutKillsAStuckGuest) {
  // echo waits for stdin forever if stdin never closes; the deadline must end it.
  std::vector<std::string> argv = {"/bin/bash", "-c",
                                   "exec " + bin("ember-vmm") + " run --timeout-ms 500 " + guest_program("echo-musl") +
                                       " < <(exec sleep 30 2>/dev/null)"};
  auto start = std::chrono::steady_clock::now();
  auto r = run_process(argv, {}, std::chrono::seconds(20));
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.status, 124) << r.err;
  EXPECT_NE(r.err.find("timed out"), std::string::npos) << r.err;
  EXPECT_LT(took, std::chrono::seconds(10));
}

}  // namespace
}  // namespace ember::testing
