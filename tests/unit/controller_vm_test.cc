// controller/vm.h's pure parts and what emberd reads from a jail: the
// jailer command line, the pid ember-jailer --detach leaves, the OOM kills
// of the jail's memory cgroup, and the words for how a VMM died.
#include "controller/vm.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "tests/unit/test_temp_dir.h"

namespace ember::controller {
namespace {

class ControllerJailFiles : public ::testing::Test {
 protected:
  void SetUp() override { std::filesystem::create_directories(base_ + "/ember-vmm/vm-1"); }
  void write(const std::string& rel, const std::string& text) { std::ofstream(base_ + "/" + rel) << text; }
  ember::testing::TempDir tmp_{"ember-vm-test"};
  const std::string base_ = tmp_.path();
};

TEST(ControllerVm, DetachedJailerCommand) {
  JailSpec j;
  j.jailer = "/usr/bin/ember-jailer";
  j.id = "vm-1";
  j.uid = 200001;
  j.gid = 200000;
  j.chroot_base = "/srv/ember";
  j.cgroup_version = 2;
  j.memory_limit_bytes = 64 << 20;
  const std::vector<std::string> vmm = {"/usr/bin/ember-vmm", "restore", "/snap"};
  auto plain = jailed_command(j, vmm);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), "--detach"), 0);
  j.detach = true;
  auto a = jailed_command(j, vmm);
  const auto dashes = std::find(a.begin(), a.end(), "--");
  ASSERT_NE(dashes, a.end());
  EXPECT_NE(std::find(a.begin(), dashes, "--detach"), dashes) << "a jailer option, before --";
  EXPECT_EQ(std::vector<std::string>(dashes + 1, a.end()), (std::vector<std::string>{"restore", "/snap"}));
  EXPECT_NE(std::find(a.begin(), dashes, "memory.max=67108864"), dashes);
}

TEST_F(ControllerJailFiles, DetachedVmmPid) {
  EXPECT_EQ(detached_vmm_pid(base_, "vm-1"), -1) << "no file";
  write("ember-vmm/vm-1/vmm.pid", "4242\n");
  EXPECT_EQ(detached_vmm_pid(base_, "vm-1"), 4242);
  for (const char* bad : {"", "x", "12x\n", "-5\n", "0\n", "99999999999\n"}) {
    write("ember-vmm/vm-1/vmm.pid", bad);
    EXPECT_EQ(detached_vmm_pid(base_, "vm-1"), -1) << bad;
  }
}

TEST_F(ControllerJailFiles, OomKillsOfTheJailsCgroups) {
  EXPECT_EQ(jail_oom_kills(base_, "vm-1"), 0) << "no record";
  // v1: the memory hierarchy's memory.oom_control (pids has none); v2:
  // memory.events. The record names the directories, one per line (here
  // a file: a temporary directory has no trusted.* xattrs for us).
  std::filesystem::create_directories(base_ + "/cg/memory/ember/vm-1");
  std::filesystem::create_directories(base_ + "/cg/pids/ember/vm-1");
  std::filesystem::create_directories(base_ + "/cg2/ember/vm-1");
  write("ember-vmm/vm-1/cgroups", base_ + "/cg/memory/ember/vm-1\n" + base_ + "/cg/pids/ember/vm-1\n");
  write("cg/memory/ember/vm-1/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n");
  EXPECT_EQ(jail_oom_kills(base_, "vm-1"), 0);
  write("cg/memory/ember/vm-1/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
  EXPECT_EQ(jail_oom_kills(base_, "vm-1"), 2);
  write("ember-vmm/vm-1/cgroups", base_ + "/cg2/ember/vm-1\n");
  write("cg2/ember/vm-1/memory.events", "low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\noom_group_kill 0\n");
  EXPECT_EQ(jail_oom_kills(base_, "vm-1"), 1);
}

TEST(ControllerVm, DeathVerdicts) {
  EXPECT_EQ(vmm_death_verdict(ExitStatus{false, 0}, false), "");
  EXPECT_EQ(vmm_death_verdict(ExitStatus{false, 137}, true), "") << "an exit status is not a kill";
  EXPECT_EQ(vmm_death_verdict(ExitStatus{true, SIGKILL}, false), "") << "killed, by whom is unknown";
  EXPECT_NE(vmm_death_verdict(ExitStatus{true, SIGKILL}, true).find("OOM killer"), std::string::npos);
  EXPECT_NE(vmm_death_verdict(ExitStatus{true, SIGSYS}, false).find("seccomp"), std::string::npos);
}

}  // namespace
}  // namespace ember::controller
