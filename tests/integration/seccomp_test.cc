// ember-vmm's seccomp filters in real runs: a syscall outside a thread's
// allow-list, made right after the filter is installed (ember-vmm-testing's
// EMBER_TEST_FORBIDDEN_SYSCALL hook), kills the whole VMM with SIGSYS; the
// release ember-vmm has no such hook. (Every other integration test runs
// ember-vmm with its filters on: a missing allowance fails them loudly.)
#include <gtest/gtest.h>

#include <cstdlib>

#include "tests/integration/vm_fixture.h"
#include "tests/unit/test_temp_dir.h"

namespace ember::testing {
namespace {

class Seccomp : public VmTest {
 protected:
  void TearDown() override { unsetenv("EMBER_TEST_FORBIDDEN_SYSCALL"); }
};

TEST_F(Seccomp, ForbiddenSyscallOnTheMainThreadKills) {
  setenv("EMBER_TEST_FORBIDDEN_SYSCALL", "main", 1);
  auto r = run_process({bin("ember-vmm-testing"), "run", guest_program("hello-musl")});
  EXPECT_EQ(r.status, 128 + SIGSYS) << r.err;
  EXPECT_EQ(r.err.find("was allowed"), std::string::npos) << r.err;
}

TEST_F(Seccomp, ForbiddenSyscallOnTheVcpuThreadKills) {
  setenv("EMBER_TEST_FORBIDDEN_SYSCALL", "vcpu", 1);
  auto r = run_process({bin("ember-vmm-testing"), "run", guest_program("hello-musl")});
  EXPECT_EQ(r.status, 128 + SIGSYS) << r.err;
  EXPECT_EQ(r.out, "") << "the guest must not have run";
}

TEST_F(Seccomp, TheReleaseBinaryHasNoHook) {
  setenv("EMBER_TEST_FORBIDDEN_SYSCALL", "main", 1);
  auto r = run_process({bin("ember-vmm"), "run", guest_program("hello-musl")});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "hello, world\n");
}

TEST_F(Seccomp, NoSeccompRunsAndWarnsLoudly) {
  auto r = run_process({bin("ember-vmm"), "run", "--no-seccomp", guest_program("hello-musl")});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "hello, world\n");
  EXPECT_NE(r.err.find("WARNING: --no-seccomp"), std::string::npos) << r.err;
}

TEST_F(Seccomp, TestingBinaryRunsNormallyWithoutTheHook) {
  auto r = run_process({bin("ember-vmm-testing"), "run", guest_program("hello-musl")});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "hello, world\n");
}

// A guest may write the Status register of any device at any time. The
// device work that follows (a reset closes the vsock's sockets and disarms
// its timer, an activation changes epoll interest) must run where the
// filters allow it, not on the vCPU thread that took the MMIO exit: the
// test kernel's "r" resets the vsock device and a console, brings each back
// to DRIVER_OK, then prints and exits.
TEST_F(Seccomp, AGuestThatResetsItsDevicesKeepsItsVmm) {
  TempDir tmp("ember-reset");
  auto r = run_process({bin("ember-vmm"), "run", "--timeout-ms", "30000", "--kernel", bin("ember-testkernel.elf"),
                        "--cmdline", "r", "--vsock-uds", tmp.path() + "/v.sock", guest_program("hello-musl")});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "hi\n");
  EXPECT_EQ(r.err.find("seccomp"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace ember::testing
