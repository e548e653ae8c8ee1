// The same guest kernel booted by QEMU's software emulator through its PVH
// note: real x86 semantics (syscall enters ring 0, the hardware path), no
// ember-vmm involved. `make deps` installs qemu-system-x86, so a missing QEMU
// is a failure, not a skip.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "tests/integration/vm_fixture.h"

namespace ember::testing {
namespace {

namespace fs = std::filesystem;

class QemuPvh : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ember-qemu-" + std::to_string(getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Packs PROGRAM (with ARGS) into an image and boots it under QEMU TCG.
  // Returns QEMU's result; stderr of the program is in err_file().
  ProcessResult boot(const std::string& program, const std::vector<std::string>& args, const std::string& input) {
    const std::string img = (dir_ / "fn.img").string();
    std::vector<std::string> pack = {bin("ember-image"), "pack", "-o", img, "--exec", program};
    for (const auto& a : args) pack.insert(pack.end(), {"--arg", a});
    auto p = run_process(pack);
    EXPECT_EQ(p.status, 0) << p.err;
    return run_process({"/usr/bin/qemu-system-x86_64", "-accel", "tcg", "-M",
                        "microvm,acpi=off,pit=off,pic=off,isa-serial=off", "-global",
                        "virtio-mmio.force-legacy=false", "-m", "256M", "-nodefaults", "-no-user-config",
                        "-nographic", "-no-reboot", "-kernel", bin("ember-guest.elf"), "-initrd", img, "-device",
                        "isa-debug-exit,iobase=0xf4,iosize=4", "-chardev", "stdio,id=c0,signal=off", "-chardev",
                        "file,id=c1,path=" + err_file(), "-device", "virtio-serial-device,id=vs0", "-device",
                        "virtconsole,chardev=c0,bus=vs0.0", "-device", "virtio-serial-device,id=vs1", "-device",
                        "virtconsole,chardev=c1,bus=vs1.0"},
                       input, std::chrono::seconds(120));
  }
  std::string err_file() const { return (dir_ / "stderr.txt").string(); }
  std::string read_err() const {
    std::ifstream f(err_file());
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  }
  // isa-debug-exit makes QEMU exit with (value << 1) | 1.
  static int qemu_status_for(int program_status) { return ((program_status << 1) | 1) & 0xff; }

  fs::path dir_;
};

TEST_F(QemuPvh, GlibcHelloUnderHardwareSemantics) {
  ASSERT_TRUE(fs::exists("/usr/bin/qemu-system-x86_64")) << "qemu-system-x86 missing: run `make deps`";
  auto r = boot(guest_program("hello-glibc"), {}, {});
  ASSERT_FALSE(r.timed_out);
  EXPECT_EQ(r.status, qemu_status_for(0)) << r.err;
  EXPECT_EQ(r.out, "hello, world\n");
}

TEST_F(QemuPvh, MuslStdioAndExitStatus) {
  ASSERT_TRUE(fs::exists("/usr/bin/qemu-system-x86_64")) << "qemu-system-x86 missing: run `make deps`";
  auto r = boot(guest_program("stdio_mix-musl"), {}, {});
  ASSERT_FALSE(r.timed_out);
  EXPECT_EQ(r.status, qemu_status_for(3)) << r.err;
  EXPECT_EQ(r.out, "to stdout 1\nto stdout 2\n");
  EXPECT_EQ(read_err(), "to stderr 1\nto stderr 2\n");
}

TEST_F(QemuPvh, StaticPieArgvFromTheImage) {
  ASSERT_TRUE(fs::exists("/usr/bin/qemu-system-x86_64")) << "qemu-system-x86 missing: run `make deps`";
  auto r = boot(guest_program("args_env-glibc-pie"), {"args_env", "under", "qemu"}, {});
  ASSERT_FALSE(r.timed_out);
  EXPECT_EQ(r.status, qemu_status_for(0)) << r.err;
  const std::string expected = "argc=3\nargv[0]=args_env\nargv[1]=under\nargv[2]=qemu\n";
  EXPECT_EQ(r.out.substr(0, expected.size()), expected);
}

TEST_F(QemuPvh, SegfaultUnderHardwareSemantics) {
  ASSERT_TRUE(fs::exists("/usr/bin/qemu-system-x86_64")) << "qemu-system-x86 missing: run `make deps`";
  auto r = boot(guest_program("segfault-musl"), {}, {});
  ASSERT_FALSE(r.timed_out);
  EXPECT_EQ(r.status, qemu_status_for(139)) << r.err;
}

}  // namespace
}  // namespace ember::testing
