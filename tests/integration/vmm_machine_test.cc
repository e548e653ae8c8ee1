// Whole microVMs, in-process, booting the VMM's own test kernel
// (tests/integration/testkernel/, built as bin/ember-testkernel.elf): exit
// codes, console output and input (pipe and file), EOF, faults, signals,
// timeouts, port I/O and a hostile descriptor. Independent of the real guest
// kernel, so a VMM regression shows up here first.
//
// Needs /dev/kvm: skipped (with the reason) where it is missing.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "base/self_path.h"
#include "vmm/machine.h"
#include "vmm/program_image.h"

namespace ember {
namespace {

struct RunResult {
  int status = -1;
  std::string out, err, error;
};

class VmmMachineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access("/dev/kvm", R_OK | W_OK) != 0) GTEST_SKIP() << "/dev/kvm not usable: " << std::strerror(errno);
    kernel_ = self_dir() + "/ember-testkernel.elf";
    if (::access(kernel_.c_str(), R_OK) != 0) GTEST_SKIP() << kernel_ << " not built";
    // Any static ELF will do as the "program": the test kernel never looks at
    // it, and the image builder refuses dynamic ones (this test binary is one).
    auto img = map_program_image(ProgramImageSpec{kernel_, "/bin/self", {"self"}, {}});
    ASSERT_TRUE(img.ok()) << img.message();
    image_ = std::move(*img);
  }

  static std::string slurp(int fd) {
    std::string s;
    ::lseek(fd, 0, SEEK_SET);
    char buf[4096];
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) s.append(buf, static_cast<size_t>(n));
    return s;
  }

  // mode: the test kernel's command line (see testkernel.S). input_fd < 0:
  // empty stdin from a pipe.
  RunResult run(const std::string& mode, int input_fd = -1, uint64_t timeout_ms = 10000) {
    const int out = ::memfd_create("out", MFD_CLOEXEC), err = ::memfd_create("err", MFD_CLOEXEC);
    int empty[2] = {-1, -1};
    if (input_fd < 0) {
      EXPECT_EQ(::pipe2(empty, O_CLOEXEC), 0);
      ::close(empty[1]);
      input_fd = empty[0];
    }
    MachineConfig c;
    c.kernel_path = kernel_;
    c.mem_size = 32 << 20;
    c.image = image_.data();
    c.image_size = image_.size;
    c.image_mapped = image_.mapping.size();
    c.timeout_ms = timeout_ms;
    c.stdin_fd = input_fd;
    c.stdout_fd = out;
    c.stderr_fd = err;
    c.cmdline = mode;
    RunResult r;
    auto o = run_machine(c);
    if (!o) {
      r.error = o.message();
    } else {
      r.status = o->status;
      r.error = o->error;
    }
    r.out = slurp(out);
    r.err = slurp(err);
    ::close(out);
    ::close(err);
    if (empty[0] >= 0) ::close(empty[0]);
    return r;
  }

  std::string kernel_;
  MappedImage image_;
};

TEST_F(VmmMachineTest, HelloAndExitCode) {
  auto r = run("");
  EXPECT_EQ(r.status, 42) << r.error;
  EXPECT_EQ(r.out, "hi\n");
  EXPECT_EQ(r.err, "");
}

TEST_F(VmmMachineTest, Stderr) {
  auto r = run("s");
  EXPECT_EQ(r.status, 3) << r.error;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "err\n");
}

TEST_F(VmmMachineTest, EchoFromAPipeUntilEof) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  std::string input;
  for (int i = 0; i < 3000; i++) input += static_cast<char>('a' + i % 26);  // under one pipe buffer
  ASSERT_EQ(::write(p[1], input.data(), input.size()), static_cast<ssize_t>(input.size()));
  ::close(p[1]);
  auto r = run("e", p[0]);
  ::close(p[0]);
  EXPECT_EQ(r.status, 0) << r.error;
  EXPECT_EQ(r.out, input);
}

TEST_F(VmmMachineTest, EchoFromARegularFile) {
  const int f = ::memfd_create("in", MFD_CLOEXEC);
  std::string input(20000, 'z');  // several 4 KiB receive buffers
  input[0] = 'A';
  input.back() = 'Z';
  ASSERT_EQ(::write(f, input.data(), input.size()), static_cast<ssize_t>(input.size()));
  ::lseek(f, 0, SEEK_SET);
  auto r = run("e", f);
  ::close(f);
  EXPECT_EQ(r.status, 0) << r.error;
  EXPECT_EQ(r.out, input);
}

TEST_F(VmmMachineTest, EmptyInputIsEof) {
  auto r = run("e");
  EXPECT_EQ(r.status, 0) << r.error;
  EXPECT_EQ(r.out, "");
}

TEST_F(VmmMachineTest, FaultIsASignal) {
  auto r = run("f");
  EXPECT_EQ(r.status, 128 + 4) << r.error;  // #UD: SIGILL
}

TEST_F(VmmMachineTest, ExitSignal) { EXPECT_EQ(run("g").status, 128 + 6); }

TEST_F(VmmMachineTest, LogLineDoesNotDisturb) {
  auto r = run("l");
  EXPECT_EQ(r.status, 0) << r.error;
  EXPECT_EQ(r.err, "");  // printed only in verbose mode
}

TEST_F(VmmMachineTest, PortIoFromRing3IsAGeneralProtectionFault) {
  auto r = run("p");
  EXPECT_EQ(r.status, 128 + 11) << r.error;
}

TEST_F(VmmMachineTest, HostileDescriptorBreaksTheDeviceNotTheVmm) {
  auto r = run("k");
  EXPECT_EQ(r.status, 7) << r.error;
  EXPECT_EQ(r.out, "");
}

TEST_F(VmmMachineTest, Timeout) {
  auto r = run("t", -1, 200);
  EXPECT_EQ(r.status, 124);
  EXPECT_EQ(r.error, "guest timed out after 200 ms");
}

TEST_F(VmmMachineTest, SetupErrorsAreClear) {
  kernel_ = "/nonexistent/kernel.elf";
  auto r = run("");
  EXPECT_EQ(r.status, -1);
  EXPECT_NE(r.error.find("kernel /nonexistent/kernel.elf: No such file"), std::string::npos) << r.error;
  kernel_ = "/proc/self/exe";  // an ELF, but no Ember note
  r = run("");
  EXPECT_NE(r.error.find("not a static executable"), std::string::npos) << r.error;
}

}  // namespace
}  // namespace ember
