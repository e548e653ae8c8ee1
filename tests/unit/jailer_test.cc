// ember-jailer's pure parts: the command line, ids, paths, cgroup mounts and
// plans (v1, v2, hybrid), and the rewriting of the VMM's arguments to
// in-jail paths; and, where this process may make a cgroup, the removal of a
// live one. The jail itself is tested in tests/integration/jailer_test.cc.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "jailer/cgroups.h"
#include "jailer/jailer_cli.h"
#include "jailer/paths.h"
#include "jailer/vmm_args.h"
#include "vmm/cli.h"

namespace ember::jail {
namespace {

std::vector<std::string> base_args() {
  return {"--id", "vm-1", "--exec-file", "/opt/ember-vmm", "--uid", "10001", "--gid", "10001"};
}

Result<JailerOptions> parse_with(std::vector<std::string> extra, std::vector<std::string> vmm = {"run", "./hello"}) {
  auto a = base_args();
  a.insert(a.end(), extra.begin(), extra.end());
  a.push_back("--");
  a.insert(a.end(), vmm.begin(), vmm.end());
  return parse_jailer_cli(a);
}

TEST(JailerCli, Ids) {
  for (const char* ok : {"a", "vm-1", "ABC-def-123", "0"}) EXPECT_TRUE(valid_id(ok)) << ok;
  EXPECT_TRUE(valid_id(std::string(64, 'x')));
  EXPECT_FALSE(valid_id(std::string(65, 'x')));
  for (const char* bad : {"", "../x", "a/b", "a b", "a.b", "a_b", "..", "é", "a\nb"}) EXPECT_FALSE(valid_id(bad)) << bad;
  auto r = parse_jailer_cli({"--id", "../etc", "--cleanup"});
  ASSERT_FALSE(r);
  EXPECT_NE(r.message().find("--id ../etc"), std::string::npos) << r.message();
}

TEST(JailerCli, ParsesEverything) {
  auto r = parse_with({"--chroot-base", "/tmp/j", "--cgroup", "memory.limit_in_bytes=64M", "--cgroup=pids.max=8",
                       "--cgroup-version", "1", "--parent-cgroup", "vms/ember", "--netns", "/var/run/netns/x",
                       "--new-pid-ns", "--daemonize", "--copy-files", "--tun", "--resource-limit", "fsize=1000",
                       "--resource-limit=no-file=64"},
                      {"run", "--mem-mib", "64", "./hello", "--", "a"});
  ASSERT_TRUE(r) << r.message();
  EXPECT_EQ(r->mode, JailerOptions::Mode::kJail);
  EXPECT_EQ(r->id, "vm-1");
  EXPECT_EQ(r->chroot_base, "/tmp/j");
  ASSERT_EQ(r->cgroups.size(), 2u);
  EXPECT_EQ(r->cgroups[1].key, "pids.max");
  EXPECT_EQ(r->cgroups[1].value, "8");
  EXPECT_EQ(r->cgroup_version, 1);
  EXPECT_EQ(r->parent_cgroup, "vms/ember");
  EXPECT_TRUE(r->new_pid_ns && r->daemonize && r->copy_files && r->tun);
  EXPECT_EQ(r->rlimit_fsize.value_or(0), 1000u);
  EXPECT_EQ(r->rlimit_nofile, 64u);
  EXPECT_EQ(r->vmm_args, (std::vector<std::string>{"run", "--mem-mib", "64", "./hello", "--", "a"}));
}

TEST(JailerCli, Defaults) {
  auto r = parse_with({});
  ASSERT_TRUE(r) << r.message();
  EXPECT_EQ(r->chroot_base, "/srv/jailer");
  EXPECT_EQ(r->rlimit_nofile, 2048u);
  EXPECT_EQ(r->cgroup_version, 0);
  EXPECT_FALSE(r->rlimit_fsize);
  EXPECT_FALSE(r->daemonize || r->detach);
  r = parse_with({"--detach"});
  ASSERT_TRUE(r) << r.message();
  EXPECT_TRUE(r->detach);
}

TEST(JailerCli, UsageErrorsNameTheProblem) {
  struct Case {
    std::vector<std::string> argv;
    const char* expect;
  };
  const std::vector<Case> cases = {
      {{}, "missing options"},
      {{"--id", "x"}, "missing --exec-file"},
      {{"--id", "x", "--exec-file", "/a"}, "missing --uid"},
      {{"--id", "x", "--exec-file", "/a", "--uid", "1", "--gid", "1"}, "missing VMM arguments"},
      {{"--exec-file", "/a"}, "missing --id"},
      {{"--id", "x", "--bogus"}, "unknown option '--bogus'"},
      {{"--id", "x", "--cgroup", "memory.limit_in_bytes"}, "expected KEY=VALUE"},
      {{"--id", "x", "--cgroup", "memory.oom_control=1"}, "unknown key"},
      {{"--id", "x", "--cgroup", "memory.max=1M", "--cgroup-version", "1", "--exec-file", "/a", "--uid", "1", "--gid",
        "1", "--", "run", "x"},
       "use memory.limit_in_bytes"},
      {{"--id", "x", "--cgroup", "pids.max=1\n2"}, "unexpected character"},
      {{"--id", "x", "--cgroup-version", "3"}, "must be 1 or 2"},
      {{"--id", "x", "--resource-limit", "nproc=5"}, "unknown resource"},
      {{"--id", "x", "--resource-limit", "fsize=-1"}, "expected fsize=N"},
      {{"--id", "x", "--parent-cgroup", "../up"}, "--parent-cgroup"},
      {{"--id", "x", "--daemonize=yes"}, "takes no value"},
      {{"--id", "x", "--cleanup", "--exec-file", "/a"}, "--cleanup takes only"},
      {{"--id", "x", "--exec-file", "/a", "--uid", "1", "--gid", "1", "--daemonize", "--detach", "--", "run", "x"},
       "exclude each other"},
  };
  for (const Case& c : cases) {
    auto r = parse_jailer_cli(c.argv);
    ASSERT_FALSE(r) << c.expect;
    EXPECT_NE(r.message().find(c.expect), std::string::npos) << "got: " << r.message();
  }
}

TEST(JailerCli, CleanupAndHelp) {
  auto r = parse_jailer_cli({"--cleanup", "--id", "vm-1", "--chroot-base", "/tmp/j"});
  ASSERT_TRUE(r) << r.message();
  EXPECT_EQ(r->mode, JailerOptions::Mode::kCleanup);
  r = parse_jailer_cli({"--help"});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->mode, JailerOptions::Mode::kHelp);
  const std::string help = jailer_usage_text();
  for (const char* word : {"--id", "--exec-file", "--uid", "--gid", "--chroot-base", "--cgroup", "--cgroup-version",
                           "--parent-cgroup", "--netns", "--new-pid-ns", "--resource-limit", "--daemonize", "--detach",
                           "--copy-files", "--tun", "--cleanup", "pivot_root", "memory.limit_in_bytes", "memory.max",
                           "example"})
    EXPECT_NE(help.find(word), std::string::npos) << word;
}

TEST(JailerPaths, AbsolutePaths) {
  EXPECT_EQ(*absolute_path("/a//b/./c/", "x"), "/a/b/c");
  EXPECT_EQ(*absolute_path("/", "x"), "/");
  auto rel = absolute_path("a/b", "x");
  ASSERT_TRUE(rel);
  EXPECT_EQ(rel->front(), '/');
  EXPECT_EQ(rel->substr(rel->size() - 4), "/a/b");
  auto dotdot = absolute_path("/srv/../etc", "--chroot-base");
  ASSERT_FALSE(dotdot);
  EXPECT_NE(dotdot.message().find("'..'"), std::string::npos);
  EXPECT_FALSE(absolute_path("", "x"));
  EXPECT_EQ(path_components("/a/b"), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(dirname_of("/a/b"), "/a");
  EXPECT_EQ(dirname_of("/a"), "/");
  EXPECT_EQ(basename_of("/a/b"), "b");
}

TEST(JailerPaths, ReadableBy) {
  struct stat st {};
  st.st_uid = 0;
  st.st_gid = 0;
  st.st_mode = S_IFREG | 0644;
  EXPECT_TRUE(readable_by(st, 1000, 1000));
  EXPECT_FALSE(executable_by(st, 1000, 1000));
  st.st_mode = S_IFREG | 0750;
  EXPECT_FALSE(readable_by(st, 1000, 1000));
  EXPECT_TRUE(executable_by(st, 1000, 0));  // group
  st.st_uid = 1000;
  st.st_mode = S_IFREG | 0077;
  EXPECT_FALSE(readable_by(st, 1000, 1000));  // the owner bits decide for the owner
}

// This machine's kind: controllers on v1, an empty v2 for systemd.
const char* kHybridMountinfo =
    "25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n"
    "26 25 0:24 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:8 - tmpfs tmpfs ro,mode=755\n"
    "27 26 0:25 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw\n"
    "28 26 0:26 / /sys/fs/cgroup/systemd rw,nosuid shared:10 - cgroup cgroup rw,xattr,name=systemd\n"
    "31 26 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:13 - cgroup cgroup rw,cpu,cpuacct\n"
    "32 26 0:30 / /sys/fs/cgroup/memory rw,nosuid shared:14 - cgroup cgroup rw,memory\n"
    "33 26 0:31 / /sys/fs/cgroup/pids rw,nosuid shared:15 - cgroup cgroup rw,pids\n"
    "34 26 0:32 / /sys/fs/cgroup/cpuset rw,nosuid shared:16 - cgroup cgroup rw,cpuset,clone_children\n"
    "35 30 0:33 / /mnt/with\\040space rw - cgroup cgroup rw,memory\n";
const char* kHybridSelf =
    "9:name=systemd:/\n"
    "8:pids:/\n"
    "4:memory:/process_api/abc\n"
    "3:cpuset:/\n"
    "2:cpu,cpuacct:/\n"
    "0::/\n";
const char* kV2Mountinfo =
    "30 1 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";

TEST(JailerCgroups, ParsesMountinfo) {
  const auto m = parse_cgroup_mounts(kHybridMountinfo);
  ASSERT_EQ(m.size(), 5u);  // unified, cpu+cpuacct, memory, pids, cpuset (memory twice: first kept)
  EXPECT_EQ(m[0].version, 2);
  EXPECT_EQ(m[0].path, "/sys/fs/cgroup/unified");
  EXPECT_EQ(m[1].path, "/sys/fs/cgroup/cpu,cpuacct");
  EXPECT_EQ(m[1].controllers, (std::vector<std::string>{"cpu", "cpuacct"}));
  EXPECT_EQ(m[4].controllers, (std::vector<std::string>{"cpuset"}));
  const auto escaped = parse_cgroup_mounts("35 30 0:33 / /mnt/with\\040space rw - cgroup cgroup rw,freezer\n");
  ASSERT_EQ(escaped.size(), 1u);
  EXPECT_EQ(escaped[0].path, "/mnt/with space");
}

TEST(JailerCgroups, OwnCgroup) {
  EXPECT_EQ(own_cgroup(kHybridSelf, 1, "memory"), "/process_api/abc");
  EXPECT_EQ(own_cgroup(kHybridSelf, 1, "cpuacct"), "/");
  EXPECT_EQ(own_cgroup(kHybridSelf, 2, ""), "/");
  EXPECT_EQ(own_cgroup(kHybridSelf, 1, "blkio"), "");
}

JailerOptions with_cgroups(std::vector<CgroupSetting> s, int version = 0) {
  JailerOptions o;
  o.id = "vm-1";
  o.cgroups = std::move(s);
  o.cgroup_version = version;
  return o;
}

// The jailer's own cgroup always has the jailer in it; these say which of its
// ancestors have processes of their own too.
bool no_processes(const std::string&) { return false; }

std::vector<CgroupMount> hybrid_mounts() { return parse_cgroup_mounts(kHybridMountinfo); }

std::vector<CgroupMount> v2_mounts(std::vector<std::string> controllers) {
  auto m = parse_cgroup_mounts(kV2Mountinfo);
  m[0].controllers = std::move(controllers);
  return m;
}

TEST(JailerCgroups, HybridMachinesUseV1UnderTheCallersCgroup) {
  auto plan = plan_cgroups(with_cgroups({{"memory.limit_in_bytes", "64M"}, {"cpu.shares", "512"}}), hybrid_mounts(),
                           kHybridSelf, no_processes);
  ASSERT_TRUE(plan) << plan.message();
  EXPECT_EQ(plan->version, 1);
  std::vector<std::string> paths;
  for (const auto& d : plan->dirs) paths.push_back(d.path);
  EXPECT_EQ(paths, (std::vector<std::string>{"/sys/fs/cgroup/memory/process_api/abc/ember/vm-1",
                                             "/sys/fs/cgroup/cpu,cpuacct/ember/vm-1",
                                             "/sys/fs/cgroup/pids/ember/vm-1"}));
  ASSERT_EQ(plan->dirs[0].settings.size(), 1u);
  EXPECT_EQ(plan->dirs[0].settings[0].value, "64M");
  EXPECT_TRUE(plan->dirs[2].settings.empty());  // pids: always there, for --cleanup
  EXPECT_EQ(memory_dir(*plan), "/sys/fs/cgroup/memory/process_api/abc/ember/vm-1");
  EXPECT_EQ(memory_limit_text(*plan), "memory.limit_in_bytes=64M");

  // No keys: still a pids cgroup, so the jail's processes can be found.
  plan = plan_cgroups(with_cgroups({}), hybrid_mounts(), kHybridSelf, no_processes);
  ASSERT_TRUE(plan) << plan.message();
  EXPECT_EQ(plan->version, 1);
  ASSERT_EQ(plan->dirs.size(), 1u);
  EXPECT_EQ(plan->dirs[0].controller, "pids");

  // --parent-cgroup places it elsewhere.
  auto o = with_cgroups({{"pids.max", "8"}});
  o.parent_cgroup = "/vms/";
  plan = plan_cgroups(o, hybrid_mounts(), kHybridSelf, no_processes);
  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->dirs[0].path, "/sys/fs/cgroup/pids/vms/vm-1");
}

TEST(JailerCgroups, V2GoesBelowTheNearestAncestorWithoutProcesses) {
  // The jailer's own cgroup (x.scope) has the jailer in it, so it cannot give
  // its children controllers: the jail goes below its parent.
  auto plan = plan_cgroups(with_cgroups({{"memory.max", "64M"}, {"pids.max", "16"}}), v2_mounts({"memory", "pids"}),
                           "0::/user.slice/x.scope\n", no_processes);
  ASSERT_TRUE(plan) << plan.message();
  EXPECT_EQ(plan->version, 2);
  ASSERT_EQ(plan->dirs.size(), 1u);
  EXPECT_EQ(plan->dirs[0].path, "/sys/fs/cgroup/user.slice/ember/vm-1");
  EXPECT_EQ(plan->dirs[0].enable, (std::vector<std::string>{"memory", "pids"}));
  EXPECT_EQ(plan->dirs[0].settings.size(), 2u);
  // Ancestors with processes of their own are passed over, up to the root
  // (which the rule exempts), as in a container whose cgroup is shared.
  auto busy = [](const std::string& rel) { return rel == "process_api/abc" || rel == "process_api"; };
  plan = plan_cgroups(with_cgroups({{"memory.max", "64M"}}), v2_mounts({"memory"}), "0::/process_api/abc/shell\n",
                      busy);
  ASSERT_TRUE(plan) << plan.message();
  EXPECT_EQ(plan->dirs[0].path, "/sys/fs/cgroup/ember/vm-1");
  // Nothing to enable: the jailer's own cgroup is fine.
  plan = plan_cgroups(with_cgroups({}, 2), v2_mounts({"memory", "pids"}), "0::/user.slice/x.scope\n", no_processes);
  ASSERT_TRUE(plan) << plan.message();
  EXPECT_EQ(plan->dirs[0].path, "/sys/fs/cgroup/user.slice/x.scope/ember/vm-1");
  // Shared keys pick v2 on a pure v2 machine; at the root, the root's ember/.
  plan = plan_cgroups(with_cgroups({{"pids.max", "16"}}), v2_mounts({"pids"}), "0::/\n", no_processes);
  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->version, 2);
  EXPECT_EQ(plan->dirs[0].path, "/sys/fs/cgroup/ember/vm-1");
  // --parent-cgroup is taken as given.
  auto o = with_cgroups({{"pids.max", "8"}});
  o.parent_cgroup = "vms";
  plan = plan_cgroups(o, v2_mounts({"pids"}), "0::/user.slice/x.scope\n", no_processes);
  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->dirs[0].path, "/sys/fs/cgroup/vms/vm-1");
}

std::string slurp_file(const std::string& path) {
  std::ifstream f(path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// ember-jailer --cleanup on a live jail: every process in the cgroup is
// killed (on v1 one pid at a time, each checked through its pidfd) and the
// cgroup removed. Needs root and a cgroup file system this process may write.
TEST(JailerCgroups, RemoveKillsTheMembers) {
  std::string dir;
  for (const CgroupMount& m : parse_cgroup_mounts(slurp_file("/proc/self/mountinfo"))) {
    const bool v1_pids = m.version == 1 && std::count(m.controllers.begin(), m.controllers.end(), "pids");
    if (!v1_pids && m.version != 2) continue;
    const std::string own = own_cgroup(slurp_file("/proc/self/cgroup"), m.version, m.version == 1 ? "pids" : "");
    dir = m.path + (own == "/" ? "" : own) + "/ember-unit-" + std::to_string(::getpid());
    break;
  }
  if (dir.empty() || ::mkdir(dir.c_str(), 0755) != 0)
    GTEST_SKIP() << "no cgroup to make here (" << (dir.empty() ? "no v1 pids or v2 mount" : dir + ": " + std::strerror(errno))
                 << ")";
  const pid_t child = ::fork();
  if (child == 0) {
    ::pause();
    ::_exit(0);
  }
  ASSERT_GT(child, 0);
  std::ofstream(dir + "/cgroup.procs") << child << std::flush;
  EXPECT_NE(slurp_file(dir + "/cgroup.procs").find(std::to_string(child)), std::string::npos);
  auto r = remove_cgroup(dir);
  EXPECT_TRUE(r) << r.message();
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  EXPECT_NE(::access(dir.c_str(), F_OK), 0) << dir << " is still there";
  ::rmdir(dir.c_str());
}

TEST(JailerCgroups, ClearErrors) {
  // v2 keys on a hybrid machine whose memory controller is bound to v1.
  auto plan = plan_cgroups(with_cgroups({{"memory.max", "64M"}}), hybrid_mounts(), kHybridSelf, no_processes);
  ASSERT_FALSE(plan);
  EXPECT_NE(plan.message().find("bound to the cgroup v1 hierarchy /sys/fs/cgroup/memory"), std::string::npos)
      << plan.message();
  // v1 keys where there is only v2.
  plan = plan_cgroups(with_cgroups({{"memory.limit_in_bytes", "64M"}}), v2_mounts({"memory"}), "0::/\n", no_processes);
  ASSERT_FALSE(plan);
  EXPECT_NE(plan.message().find("available in cgroup v2"), std::string::npos) << plan.message();
  // Mixed versions.
  plan = plan_cgroups(with_cgroups({{"memory.max", "1"}, {"cpu.shares", "2"}}), hybrid_mounts(), kHybridSelf, no_processes);
  ASSERT_FALSE(plan);
  EXPECT_NE(plan.message().find("mix"), std::string::npos);
  // Nothing mounted.
  plan = plan_cgroups(with_cgroups({}), {}, "", no_processes);
  ASSERT_FALSE(plan);
}

TEST(JailerVmmArgs, RewritesFilesToInJailPaths) {
  auto r = rewrite_vmm_args({"run", "--mem-mib", "64", "/b/hello-musl", "--", "x", "y"}, "vm-1",
                            "/opt/bin/ember-guest.elf", {"ember-vmm", "dev"});
  ASSERT_TRUE(r) << r.message();
  EXPECT_EQ(r->args, (std::vector<std::string>{"run", "--id", "vm-1", "--kernel", "/ember-guest.elf", "--mem-mib", "64",
                                               "/hello-musl", "--", "x", "y"}));
  ASSERT_EQ(r->files.size(), 2u);
  EXPECT_EQ(r->files[0].host_path, "/opt/bin/ember-guest.elf");
  EXPECT_EQ(r->files[1].host_path, "/b/hello-musl");
  EXPECT_EQ(r->files[1].jail_name, "hello-musl");

  r = rewrite_vmm_args({"run", "--kernel=k/guest.elf", "--image", "fn.img", "-v"}, "a", "/x/ember-guest.elf",
                       {"ember-vmm", "dev"});
  ASSERT_TRUE(r) << r.message();
  EXPECT_EQ(r->args, (std::vector<std::string>{"run", "--id", "a", "--kernel", "/guest.elf", "--image", "/fn.img", "-v"}));
  ASSERT_EQ(r->files.size(), 2u);
  EXPECT_EQ(r->files[0].role, JailFile::Role::kKernel);
  EXPECT_EQ(r->files[1].role, JailFile::Role::kImage);
}

TEST(JailerVmmArgs, WhatTheVmmCreatesGoesToRun) {
  auto r = rewrite_vmm_args({"run", "--vsock-uds", "/s/dir/v.sock", "--snapshot-at-ready=/var/lib/x/snap", "--image",
                             "/i/fn.img"},
                            "vm-2", "/opt/ember-guest.elf", {"ember-vmm", "dev", "run"});
  ASSERT_TRUE(r) << r.message();
  EXPECT_EQ(r->args, (std::vector<std::string>{"run", "--id", "vm-2", "--kernel", "/ember-guest.elf", "--vsock-uds",
                                               "/run/v.sock", "--snapshot-at-ready", "/run/snap", "--image", "/fn.img"}));
  EXPECT_EQ(r->outputs, (std::vector<std::string>{"v.sock", "snap"}));
  ASSERT_EQ(r->files.size(), 2u);  // the image and the default kernel; nothing for the outputs

  r = rewrite_vmm_args({"run", "--image", "/i/fn.img"}, "a", "/opt/ember-guest.elf", {"ember-vmm", "dev", "run"});
  ASSERT_TRUE(r) << r.message();
  EXPECT_TRUE(r->outputs.empty()) << "no /run unless the VMM creates something";
}

TEST(JailerVmmArgs, RestoreBringsTheSnapshotDirectoryAndNoKernel) {
  auto r = rewrite_vmm_args({"restore", "--repeat", "3", "--vsock-uds", "/r/vm-7/v.sock", "-v", "/state/fn/snapshot"},
                            "vm-7", "/opt/ember-guest.elf", {"ember-vmm", "dev", "run"});
  ASSERT_TRUE(r) << r.message();
  EXPECT_EQ(r->args, (std::vector<std::string>{"restore", "--id", "vm-7", "--repeat", "3", "--vsock-uds",
                                               "/run/v.sock", "-v", "/snapshot"}));
  ASSERT_EQ(r->files.size(), 1u);
  EXPECT_EQ(r->files[0].role, JailFile::Role::kSnapshot);
  EXPECT_EQ(r->files[0].host_path, "/state/fn/snapshot");
  EXPECT_EQ(r->outputs, (std::vector<std::string>{"v.sock"}));

  r = rewrite_vmm_args({"restore", "--", "snap"}, "b", "/opt/ember-guest.elf", {"ember-vmm", "dev", "run"});
  ASSERT_TRUE(r) << r.message();
  EXPECT_EQ(r->args, (std::vector<std::string>{"restore", "--id", "b", "/snap"}));
}

TEST(JailerVmmArgs, Refusals) {
  const std::vector<std::string> reserved = {"ember-vmm", "dev", "run"};
  struct Case {
    std::vector<std::string> args;
    const char* expect;
  };
  const std::vector<Case> cases = {
      {{"./hello"}, "must start with `run`"},
      {{}, "must start with `run`"},
      {{"run"}, "missing PROGRAM"},
      {{"run", "--id", "x", "./hello"}, "passes the jail's own --id"},
      {{"run", "--frobnicate", "./hello"}, "does not know"},
      {{"run", "/x/ember-vmm"}, "already taken"},
      {{"run", "/x/dev"}, "already taken"},
      {{"run", "/x/ember-guest.elf"}, "already taken"},
      {{"run", "--mem-mib", "7", "./hello"}, "--mem-mib 7"},  // ember-vmm's own parser has the last word
      {{"run", "--image", "a.img", "./hello"}, "image carries"},
      {{"restore"}, "missing the snapshot directory"},
      {{"restore", "--kernel", "k", "snap"}, "does not know"},  // a snapshot carries its guest
      {{"restore", "--id", "x", "snap"}, "passes the jail's own --id"},
      {{"restore", "/x/run"}, "already taken"},
      {{"restore", "snap", "second"}, "second"},  // ember-vmm's own parser
      {{"restore", "--vsock-uds", "/a/s", "--repeat", "0", "snap"}, "--repeat 0"},
      {{"run", "--vsock-uds", "/a/x", "--snapshot-at-ready", "/b/x", "./hello"}, "already taken in the jail's /run"},
      {{"api"}, "must start with `run` or `restore`"},
  };
  for (const Case& c : cases) {
    auto r = rewrite_vmm_args(c.args, "id", "/x/ember-guest.elf", reserved);
    ASSERT_FALSE(r) << c.expect;
    EXPECT_NE(r.message().find(c.expect), std::string::npos) << "got: " << r.message();
  }
}

// Every option `ember-vmm run --help` and `ember-vmm restore --help` list
// must be known to the rewriting, or a new option that names a file could
// reach the jail with a host path.
void expect_every_option_known(const std::string& help_text, const std::vector<std::string>& values,
                               const std::vector<std::string>& flags, const char* command) {
  std::set<std::string> known(values.begin(), values.end());
  known.insert(flags.begin(), flags.end());
  std::istringstream help(help_text);
  int seen = 0;
  for (std::string line; std::getline(help, line);) {
    if (line.rfind("  -", 0) != 0) continue;  // option lines start with two spaces and a dash
    std::istringstream words(line);
    for (std::string w; words >> w;) {
      if (w.empty() || w[0] != '-') break;
      if (w.back() == ',') w.pop_back();
      EXPECT_TRUE(known.count(w)) << "ember-vmm " << command << " option " << w << " is unknown to jailer/vmm_args.cc";
      seen++;
    }
  }
  EXPECT_GT(seen, 5);
}

TEST(JailerVmmArgs, KnowsEveryVmmRunOption) {
  expect_every_option_known(ember::run_usage_text(), vmm_value_options(), vmm_flag_options(), "run");
}

TEST(JailerVmmArgs, KnowsEveryVmmRestoreOption) {
  expect_every_option_known(ember::restore_usage_text(), vmm_restore_value_options(), vmm_restore_flag_options(),
                            "restore");
}

}  // namespace
}  // namespace ember::jail
