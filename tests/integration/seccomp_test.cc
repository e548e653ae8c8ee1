// ember-vmm's seccomp filters in real runs: a syscall outside a thread's
// allow-list, made right after the filter is installed (ember-vmm-testing's
// EMBER_TEST_FORBIDDEN_SYSCALL hook), kills the whole VMM with SIGSYS; the
// release ember-vmm has no such hook. (Every other integration test runs
// ember-vmm with its filters on: a missing allowance fails them loudly.)
#include <gtest/gtest.h>

#include <cstdlib>

#include "tests/integration/vm_fixture.h"

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

}  // namespace
}  // namespace ember::testing
