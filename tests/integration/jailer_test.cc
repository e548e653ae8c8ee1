// ember-jailer for real: jailed runs give what unjailed runs give; a running
// jailed VMM, inspected from the host through /proc/PID, has exactly the
// confinement promised (ids, capabilities, seccomp on every thread, root
// directory, cgroups and limits, fds, rlimits, namespaces); the memory
// cgroup kills a VM that outgrows it and the jailer says so; hostile
// arguments are refused with nothing created; --cleanup removes everything.
//
// The jailer needs root (namespaces, cgroups, mknod): as another user these
// tests skip, saying so. Each test uses its own chroot base (a temporary
// directory) and ids unique to this process, so they run in parallel.
#include <gtest/gtest.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/snapshot_fixture.h"
#include "tests/integration/vm_fixture.h"
#include "api/stdio_client.h"

extern char** environ;

namespace ember::testing {
namespace {

constexpr uid_t kUid = 10071;
constexpr gid_t kGid = 10072;

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::set<std::string> list_dir(const std::string& path) {
  std::set<std::string> out;
  if (DIR* d = opendir(path.c_str())) {
    while (dirent* e = readdir(d))
      if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") out.insert(e->d_name);
    closedir(d);
  }
  return out;
}

bool exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

// "Key:\tvalue" from /proc/PID/status.
std::string status_field(const std::string& status, const std::string& key) {
  std::istringstream lines(status);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind(key + ":", 0) == 0) {
      std::string v = line.substr(key.size() + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      return v;
    }
  return "";
}

// The VMM's own threads: KVM adds kernel workers to the process
// ("kvm-nx-lpage-recovery"), which are not ember-vmm's.
std::vector<std::string> vmm_threads(pid_t pid) {
  std::vector<std::string> out;
  for (const std::string& t : list_dir("/proc/" + std::to_string(pid) + "/task"))
    if (read_file("/proc/" + std::to_string(pid) + "/task/" + t + "/comm").rfind("kvm-", 0) != 0) out.push_back(t);
  return out;
}

// Where a cgroup hierarchy is mounted here (from mountinfo): v1 by
// controller, or the v2 one (controller "").
std::string cgroup_mount(const std::string& controller) {
  std::istringstream lines(read_file("/proc/self/mountinfo"));
  for (std::string line; std::getline(lines, line);) {
    const bool v2 = line.find(" - cgroup2 ") != std::string::npos;
    const auto sep = line.find(v2 ? " - cgroup2 " : " - cgroup ");
    if (sep == std::string::npos || v2 != controller.empty()) continue;
    std::istringstream pre(line.substr(0, sep));
    std::string f, mount;
    for (int i = 0; i < 5 && pre >> f; i++) mount = f;
    if (v2) return mount;
    const std::string opts = line.substr(line.rfind(' ') + 1);
    std::istringstream o(opts);
    for (std::string c; std::getline(o, c, ',');)
      if (c == controller) return mount;
  }
  return "";
}

// The cgroup version the jailer picks here, and its names: v1 where the
// memory controller has a v1 hierarchy (the development machines' hybrid
// layout), else v2 (cgroup2 only, as on most current distributions).
struct HostCgroups {
  bool v1 = !cgroup_mount("memory").empty();
  std::string memory_limit = v1 ? "memory.limit_in_bytes" : "memory.max";

  // The directory of pid's cgroup for a controller (memory, pids).
  std::string dir_of(pid_t pid, const std::string& controller) const {
    std::istringstream lines(read_file("/proc/" + std::to_string(pid) + "/cgroup"));
    const std::string key = v1 ? ":" + controller + ":" : "0::";
    for (std::string line; std::getline(lines, line);)
      if (line.find(key) != std::string::npos) return cgroup_mount(v1 ? controller : "") + line.substr(line.rfind(':') + 1);
    return "";
  }
  // A cgroup of jail `id` anywhere in the hierarchies (the jailer picks
  // the parent from its own cgroup, so search rather than guess), or "".
  std::string find_jail(const std::string& id) const {
    const std::string tail = "/ember/" + id;
    for (const char* c : {"memory", "pids", ""}) {
      const std::string mount = cgroup_mount(c);
      if (mount.empty()) continue;
      std::error_code ec;
      for (auto it = std::filesystem::recursive_directory_iterator(
               mount, std::filesystem::directory_options::skip_permission_denied, ec);
           !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
        const std::string path = it->path().string();
        if (it->is_directory(ec) && path.size() >= tail.size() && path.compare(path.size() - tail.size(), tail.size(), tail) == 0)
          return path;
      }
    }
    return "";
  }
};

class Jailer : public VmTest {
 protected:
  void SetUp() override {
    VmTest::SetUp();
    if (IsSkipped()) return;
    if (geteuid() != 0) GTEST_SKIP() << "ember-jailer needs root (namespaces, cgroups, mknod); running as uid " << geteuid();
    const char* tmp = std::getenv("TMPDIR");
    std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/ember-jailer-test-XXXXXX";
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    base_ = templ;
  }
  void TearDown() override {
    for (const std::string& id : ids_) run_process({bin("ember-jailer"), "--cleanup", "--id", id, "--chroot-base", base_});
    if (!base_.empty()) run_process({"/bin/rm", "-rf", base_});
  }

  std::string new_id(const std::string& what) {
    ids_.push_back("t" + std::to_string(getpid()) + "-" + what);
    return ids_.back();
  }

  std::vector<std::string> jailer_argv(const std::string& id, const std::vector<std::string>& jail_flags,
                                       const std::vector<std::string>& vmm_args) {
    std::vector<std::string> argv = {bin("ember-jailer"), "--id", id, "--exec-file", bin("ember-vmm"),
                                     "--uid", std::to_string(kUid), "--gid", std::to_string(kGid), "--chroot-base", base_};
    argv.insert(argv.end(), jail_flags.begin(), jail_flags.end());
    argv.push_back("--");
    argv.push_back("run");
    argv.insert(argv.end(), vmm_args.begin(), vmm_args.end());
    return argv;
  }

  ProcessResult jailed(const std::string& id, const std::vector<std::string>& jail_flags,
                       const std::vector<std::string>& vmm_args, const std::string& input = {}) {
    return run_process(jailer_argv(id, jail_flags, vmm_args), input);
  }

  std::string jail_dir(const std::string& id) const { return base_ + "/ember-vmm/" + id; }

  // Starts ember-jailer with these file actions, without waiting; -1 if it could not.
  static pid_t spawn_jailer(const std::vector<std::string>& argv_s, const posix_spawn_file_actions_t* fa) {
    std::vector<char*> argv;
    for (const auto& a : argv_s) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    pid_t pid = -1;
    return posix_spawn(&pid, argv[0], fa, nullptr, argv.data(), environ) == 0 ? pid : -1;
  }

  std::string base_;
  std::vector<std::string> ids_;
  HostCgroups cg_;
};

TEST_F(Jailer, SameOutputAndStatusAsUnjailed) {
  struct Case {
    std::string program;
    std::vector<std::string> args;
    std::string input;
  };
  const std::vector<Case> cases = {
      {"hello-musl", {}, ""},
      {"hello-glibc", {}, ""},
      {"hello-glibc-pie", {}, ""},
      {"echo-musl", {}, std::string(100000, 'x') + "the end\n"},
      {"echo-glibc", {}, "one line\n"},
      {"exit_code-musl", {"--", "42"}, ""},
      {"stdio_mix-glibc", {}, ""},
      {"segfault-musl", {}, ""},
  };
  int n = 0;
  for (const Case& c : cases) {
    std::vector<std::string> vmm = {"--timeout-ms", "30000", guest_program(c.program)};
    vmm.insert(vmm.end(), c.args.begin(), c.args.end());
    std::vector<std::string> plain = {bin("ember-vmm"), "run"};
    plain.insert(plain.end(), vmm.begin(), vmm.end());
    const ProcessResult want = run_process(plain, c.input);
    const ProcessResult got = jailed(new_id("same" + std::to_string(n++)), {}, vmm, c.input);
    EXPECT_EQ(got.status, want.status) << c.program << ": " << got.err;
    EXPECT_EQ(got.out, want.out) << c.program;
    EXPECT_EQ(got.err, want.err) << c.program;
  }
}

// A jailed echo that waits on stdin, looked at from the host.
TEST_F(Jailer, InsideTheJailFromTheHost) {
  const std::string id = new_id("inside");
  // An fd the jailer inherits (no O_CLOEXEC): it must not reach the VMM.
  const int leaked = open("/etc/hostname", O_RDONLY);
  ASSERT_GE(leaked, 0);
  int in[2];
  ASSERT_EQ(pipe2(in, O_CLOEXEC), 0);
  const std::string out_path = base_ + "/out", err_path = base_ + "/err";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  const pid_t jailer = spawn_jailer(jailer_argv(id,
                                                {"--cgroup", cg_.memory_limit + "=268435456", "--cgroup",
                                                 "pids.max=32", "--resource-limit", "no-file=128"},
                                                {"--mem-mib", "64", guest_program("echo-musl")}),
                                    &fa);
  posix_spawn_file_actions_destroy(&fa);
  ASSERT_GT(jailer, 0);
  close(in[0]);
  close(leaked);

  // The VMM: the jailer's child, once it runs as kUid with its vCPU thread
  // confined (two threads, both with a seccomp filter).
  pid_t vmm = -1;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    if (vmm < 0)
      for (const std::string& p : list_dir("/proc")) {
        if (p.find_first_not_of("0123456789") != std::string::npos) continue;
        const std::string stat = read_file("/proc/" + p + "/stat");
        const auto close_paren = stat.rfind(')');
        if (close_paren == std::string::npos) continue;
        std::istringstream rest(stat.substr(close_paren + 2));
        std::string state;
        long ppid = 0;
        rest >> state >> ppid;
        if (ppid == jailer) vmm = std::stoi(p);
      }
    if (vmm > 0 && vmm_threads(vmm).size() == 2) {
      int confined = 0;
      for (const std::string& t : vmm_threads(vmm))
        confined += status_field(read_file("/proc/" + std::to_string(vmm) + "/task/" + t + "/status"), "Seccomp") == "2";
      if (confined == 2) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_GT(vmm, 0) << "no VMM under the jailer; stderr: " << read_file(err_path);
  const std::string proc = "/proc/" + std::to_string(vmm);
  const std::string status = read_file(proc + "/status");

  // Ids, capabilities, no_new_privs, seccomp on every thread.
  const std::string u = std::to_string(kUid), g = std::to_string(kGid);
  EXPECT_EQ(status_field(status, "Uid"), u + "\t" + u + "\t" + u + "\t" + u);
  EXPECT_EQ(status_field(status, "Gid"), g + "\t" + g + "\t" + g + "\t" + g);
  EXPECT_EQ(trim(status_field(status, "Groups")), "");
  for (const char* cap : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"})
    EXPECT_EQ(status_field(status, cap), "0000000000000000") << cap;
  EXPECT_EQ(status_field(status, "NoNewPrivs"), "1");
  EXPECT_EQ(vmm_threads(vmm).size(), 2u) << "main and one vCPU thread";
  for (const std::string& t : list_dir(proc + "/task"))  // KVM's own workers inherit the filter too
    EXPECT_EQ(status_field(read_file(proc + "/task/" + t + "/status"), "Seccomp"), "2") << "thread " << t;

  // The root directory holds exactly what the VM needs.
  EXPECT_EQ(list_dir(proc + "/root"), (std::set<std::string>{"dev", "ember-vmm", "ember-guest.elf", "echo-musl"}));
  EXPECT_EQ(list_dir(proc + "/root/dev"), (std::set<std::string>{"kvm"}));
  struct stat kvm;
  ASSERT_EQ(stat((proc + "/root/dev/kvm").c_str(), &kvm), 0);
  EXPECT_TRUE(S_ISCHR(kvm.st_mode));
  EXPECT_EQ(kvm.st_uid, kUid);
  EXPECT_EQ(kvm.st_mode & 07777, 0600u);
  EXPECT_EQ(access((proc + "/root/etc").c_str(), F_OK), -1);
  // Other namespaces than ours: mount, IPC and network (a new, empty one:
  // nothing but a loopback that is down); ours for pid (not asked for).
  auto ns = [](const std::string& p, const char* kind) {
    char buf[64] = {};
    return readlink((p + "/ns/" + kind).c_str(), buf, sizeof buf - 1) > 0 ? std::string(buf) : std::string();
  };
  EXPECT_NE(ns(proc, "mnt"), ns("/proc/self", "mnt"));
  EXPECT_NE(ns(proc, "ipc"), ns("/proc/self", "ipc"));
  EXPECT_NE(ns(proc, "net"), ns("/proc/self", "net"));
  EXPECT_EQ(ns(proc, "pid"), ns("/proc/self", "pid"));
  const std::string links = read_file(proc + "/net/dev");
  EXPECT_NE(links.find("lo:"), std::string::npos) << links;
  EXPECT_EQ(std::count(links.begin(), links.end(), '\n'), 3) << "two header lines and lo alone: " << links;

  // cgroups: member, with the limits written.
  auto is_jails = [&](const std::string& dir) {
    return dir.size() > id.size() + 7 && dir.substr(dir.size() - id.size() - 7) == "/ember/" + id;
  };
  const std::string mem_dir = cg_.dir_of(vmm, "memory"), pids_dir = cg_.dir_of(vmm, "pids");
  EXPECT_TRUE(is_jails(mem_dir)) << mem_dir;
  EXPECT_TRUE(is_jails(pids_dir)) << pids_dir;
  EXPECT_EQ(trim(read_file(mem_dir + "/" + cg_.memory_limit)), "268435456");
  EXPECT_EQ(trim(read_file(pids_dir + "/pids.max")), "32");
  EXPECT_NE(read_file(pids_dir + "/cgroup.procs").find(std::to_string(vmm)), std::string::npos);

  // fds: stdio, then only KVM and the VMM's own anonymous inodes.
  for (const std::string& fd : list_dir(proc + "/fd")) {
    char buf[256] = {};
    ASSERT_GT(readlink((proc + "/fd/" + fd).c_str(), buf, sizeof buf - 1), 0);
    const std::string target = buf;
    if (std::stoi(fd) <= 2) continue;
    const bool expected = target == "/dev/kvm" || target == "anon_inode:kvm-vm" ||
                          target.rfind("anon_inode:kvm-vcpu:", 0) == 0 || target == "anon_inode:[eventfd]" ||
                          target == "anon_inode:[eventpoll]" || target == "anon_inode:[signalfd]" ||
                          target == "anon_inode:[timerfd]";
    EXPECT_TRUE(expected) << "fd " << fd << " -> " << target;
  }
  // The jailer, supervising, holds nothing but its stdio: what set-up opened
  // (the bound files, the cgroups' task files, the jail directory) is closed.
  EXPECT_EQ(list_dir("/proc/" + std::to_string(jailer) + "/fd"), (std::set<std::string>{"0", "1", "2"}));
  // rlimits and environment.
  EXPECT_NE(read_file(proc + "/limits").find("Max open files            128                  128"), std::string::npos)
      << read_file(proc + "/limits");
  EXPECT_EQ(read_file(proc + "/environ"), "");
  std::string cmdline;
  for (const std::string& a : {std::string("/ember-vmm"), std::string("run"), std::string("--id"), id,
                               std::string("--kernel"), std::string("/ember-guest.elf"), std::string("--mem-mib"),
                               std::string("64"), std::string("/echo-musl")})
    cmdline += a + '\0';
  EXPECT_EQ(read_file(proc + "/cmdline"), cmdline);

  // Finish the run: the output is the input.
  ASSERT_EQ(write(in[1], "jailed\n", 7), 7);
  close(in[1]);
  int ws = 0;
  ASSERT_EQ(waitpid(jailer, &ws, 0), jailer);
  EXPECT_TRUE(WIFEXITED(ws) && WEXITSTATUS(ws) == 0) << ws << " " << read_file(err_path);
  EXPECT_EQ(read_file(out_path), "jailed\n");
}

// A template snapshot taken in a jail (written to the jail's run/, on the
// host CHROOT_BASE/ember-vmm/ID/run) and restored in other jails, where the
// snapshot directory is bound read-only and the program's stdio goes over the
// vsock socket that the VMM makes in run/: what emberd does for every VM.
TEST_F(Jailer, SnapshotInOneJailRestoreInAnother) {
  const std::string tpl_id = new_id("tpl");
  const ProcessResult made =
      jailed(tpl_id, {}, {"--timeout-ms", "30000", "--snapshot-at-ready", "/anywhere/tpl", guest_program("echo-musl")});
  ASSERT_EQ(made.status, 0) << made.err;
  const std::string made_dir = jail_dir(tpl_id) + "/run/tpl";
  for (const char* f : {"vm.vmstate", "vm.mem", "vm.img"}) ASSERT_TRUE(exists(made_dir + "/" + f)) << f;
  struct stat st;
  ASSERT_EQ(stat(made_dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, kUid) << "the VMM wrote it, as its own uid";
  // What emberd does: copy it out, root-owned, then remove the jail.
  const std::string snap = base_ + "/snap";
  ASSERT_EQ(run_process({"/bin/cp", "-r", "--sparse=always", made_dir, snap}).status, 0);
  ASSERT_EQ(run_process({bin("ember-jailer"), "--cleanup", "--id", tpl_id, "--chroot-base", base_}).status, 0);
  EXPECT_FALSE(exists(jail_dir(tpl_id)));
  const std::string mem_before = read_file(snap + "/vm.mem");
  ASSERT_FALSE(mem_before.empty());

  for (int vm = 0; vm < 2; vm++) {
    const std::string id = new_id("restore" + std::to_string(vm));
    std::vector<std::string> argv = {bin("ember-jailer"), "--id", id, "--exec-file", bin("ember-vmm"), "--uid",
                                     std::to_string(kUid + 1 + vm), "--gid", std::to_string(kGid), "--chroot-base",
                                     base_, "--", "restore", "--repeat", "2", "--vsock-uds", "/x/v.sock", snap};
    Background b(argv, base_ + "/" + id + ".out", base_ + "/" + id + ".err");
    ASSERT_TRUE(b.started());
    const std::string sock = jail_dir(id) + "/run/v.sock";
    for (int run = 0; run < 2; run++) {
      const std::string input = "vm " + std::to_string(vm) + " run " + std::to_string(run) + "\n";
      auto r = stdio::invoke(sock, input, 30000);
      ASSERT_TRUE(r) << r.message() << "; " << read_file(base_ + "/" + id + ".err");
      EXPECT_EQ(r->out, input);
      EXPECT_EQ(r->status(), 0);
    }
    EXPECT_EQ(b.wait(), 0) << read_file(base_ + "/" + id + ".err");
  }
  // The guests wrote to their memory; the snapshot they came from is as it was.
  EXPECT_TRUE(read_file(snap + "/vm.mem") == mem_before) << "a restore changed the template's memory file";
}

TEST_F(Jailer, MemoryLimitKillsTheVmAndSaysSo) {
  const std::string id = new_id("oom");
  const auto start = std::chrono::steady_clock::now();
  auto r = jailed(id, {"--cgroup", cg_.memory_limit + "=64M"},
                  {"--timeout-ms", "30000", "--mem-mib", "512", guest_program("touch_memory-musl"), "--", "300"});
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20)) << "not a hang";
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.status, 137) << r.err;
  EXPECT_NE(r.err.find("OOM killer"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(cg_.memory_limit + "=64M"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
  // The same program fits in a larger jail.
  auto ok = jailed(new_id("fits"), {"--cgroup", cg_.memory_limit + "=512M"},
                   {"--timeout-ms", "30000", "--mem-mib", "512", guest_program("touch_memory-musl"), "--", "300"});
  EXPECT_EQ(ok.status, 0) << ok.err;
  EXPECT_EQ(ok.out, "ok 300\n");
}

TEST_F(Jailer, HostileArgumentsAreRefusedAndNothingIsCreated) {
  const std::string hello = guest_program("hello-musl");
  // A symlinked chroot base (pointing at a real, empty directory).
  const std::string real = base_ + "/real", link = base_ + "/link";
  ASSERT_EQ(mkdir(real.c_str(), 0755), 0);
  ASSERT_EQ(symlink(real.c_str(), link.c_str()), 0);
  // A world-writable chroot base.
  const std::string open_dir = base_ + "/open";
  ASSERT_EQ(mkdir(open_dir.c_str(), 0755), 0);
  ASSERT_EQ(chmod(open_dir.c_str(), 0777), 0);

  const std::string plain_file = base_ + "/not-a-program";
  { std::ofstream(plain_file) << "data\n"; }
  ASSERT_EQ(chmod(plain_file.c_str(), 0644), 0);
  const std::string id = "t" + std::to_string(getpid()) + "-hostile";
  auto with = [&](std::vector<std::string> replace) {
    std::vector<std::string> argv = {bin("ember-jailer"), "--id", id, "--exec-file", bin("ember-vmm"), "--uid",
                                     std::to_string(kUid), "--gid", std::to_string(kGid), "--chroot-base", base_};
    for (size_t i = 0; i + 1 < replace.size(); i += 2) {
      auto it = std::find(argv.begin(), argv.end(), replace[i]);
      if (it != argv.end()) *(it + 1) = replace[i + 1];
      else argv.insert(argv.end(), {replace[i], replace[i + 1]});
    }
    argv.insert(argv.end(), {"--", "run", hello});
    return argv;
  };
  struct Case {
    std::vector<std::string> argv;
    int status;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {with({"--id", "../escape"}), 2, "--id ../escape: expected 1-64 characters"},
      {with({"--id", "a/b"}), 2, "--id a/b"},
      {with({"--id", std::string(65, 'a')}), 2, "expected 1-64 characters"},
      {with({"--chroot-base", link}), 125, link + " is a symlink"},
      {with({"--chroot-base", link + "/sub"}), 125, link + " is a symlink"},
      {with({"--chroot-base", open_dir}), 125, "writable by group or others"},
      {with({"--chroot-base", base_ + "/../etc"}), 125, "'..' is not allowed"},
      {with({"--exec-file", base_ + "/no-such-vmm"}), 125, base_ + "/no-such-vmm: No such file"},
      {with({"--exec-file", link}), 125, "is a symlink"},
      {with({"--exec-file", plain_file}), 125, "not executable"},
      {with({"--uid", "no-such-user-ember"}), 125, "--uid no-such-user-ember: no such user in /etc/passwd"},
      {with({"--gid", "no-such-group-ember"}), 125, "--gid no-such-group-ember: no such group in /etc/group"},
      {with({"--uid", "0"}), 125, "must not run as root"},
      {with({"--uid", "4294967295"}), 125, "not a valid user id"},
      {with({"--uid", "-5"}), 125, "not a user id or name"},
      {with({"--cgroup", "memory.oom_control=1"}), 2, "unknown key"},
      {with({"--cgroup", "memory.max=64M", "--cgroup-version", "1"}), 2, "use memory.limit_in_bytes"},
      {with({"--netns", "/etc/hostname"}), 125, "not a network namespace"},
  };
  for (const Case& c : cases) {
    auto r = run_process(c.argv);
    EXPECT_EQ(r.status, c.status) << c.expect << ": " << r.err;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << "wanted '" << c.expect << "', got: " << r.err;
    EXPECT_NE(r.err.find("ember-jailer: "), std::string::npos);
    if (c.status == 125) {
      EXPECT_NE(r.err.find("step 1 (validate)"), std::string::npos) << r.err;
    }
  }
  // Nothing was created: no jail directory anywhere, no cgroup.
  EXPECT_EQ(list_dir(base_), (std::set<std::string>{"real", "link", "open", "not-a-program"}));
  EXPECT_TRUE(list_dir(real).empty());
  EXPECT_TRUE(list_dir(open_dir).empty());
  EXPECT_EQ(cg_.find_jail(id), "") << "a cgroup of the jail was created";
  // VMM arguments ember-vmm itself would refuse are refused before any jail.
  auto r = run_process({bin("ember-jailer"), "--id", id, "--exec-file", bin("ember-vmm"), "--uid", "10071", "--gid",
                        "10071", "--chroot-base", base_, "--", "run", "--mem-mib", "7", hello});
  EXPECT_EQ(r.status, 125);
  EXPECT_NE(r.err.find("--mem-mib 7"), std::string::npos) << r.err;
  EXPECT_FALSE(exists(base_ + "/ember-vmm/" + id));
}

TEST_F(Jailer, AFailureInALaterStepRemovesTheHalfBuiltJail) {
  const std::string id = new_id("late");
  // Valid syntax, refused by the kernel when written (step 5).
  auto r = jailed(id, {"--cgroup", cg_.memory_limit + "=lots"}, {guest_program("hello-musl")});
  EXPECT_EQ(r.status, 125);
  EXPECT_NE(r.err.find("step 5 (cgroups)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(cg_.memory_limit), std::string::npos) << r.err;
  EXPECT_FALSE(exists(jail_dir(id))) << "the jail directory is left";
  EXPECT_EQ(cg_.find_jail(id), "") << "a cgroup of the jail is left";
  // A second attempt with the same id works: nothing is in the way.
  r = jailed(id, {}, {guest_program("hello-musl")});
  EXPECT_EQ(r.status, 0) << r.err;
  // And a third is refused while that jail exists.
  r = jailed(id, {}, {guest_program("hello-musl")});
  EXPECT_EQ(r.status, 125);
  EXPECT_NE(r.err.find("already exists"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--cleanup --id " + id), std::string::npos) << r.err;
}

TEST_F(Jailer, CleanupRemovesTheJailAndItsCgroups) {
  const std::string id = new_id("clean");
  auto r = jailed(id, {"--cgroup", cg_.memory_limit + "=128M"}, {guest_program("hello-musl")});
  ASSERT_EQ(r.status, 0) << r.err;
  // On the host the jail is an empty directory: its root was a tmpfs in the
  // jail's own mount namespace, gone with it. The jail's cgroups are recorded
  // on the jail directory, for --cleanup.
  EXPECT_EQ(list_dir(jail_dir(id)), (std::set<std::string>{"root"}));
  EXPECT_TRUE(list_dir(jail_dir(id) + "/root").empty());
  char buf[4096] = {};
  const ssize_t n = getxattr(jail_dir(id).c_str(), "trusted.ember.cgroups", buf, sizeof buf - 1);
  const std::string record = n > 0 ? std::string(buf, static_cast<size_t>(n)) : read_file(jail_dir(id) + "/cgroups");
  EXPECT_NE(record.find("/ember/" + id + "\n"), std::string::npos) << record;
  EXPECT_NE(cg_.find_jail(id), "");

  r = run_process({bin("ember-jailer"), "--cleanup", "--id", id, "--chroot-base", base_});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_FALSE(exists(jail_dir(id)));
  EXPECT_EQ(cg_.find_jail(id), "");
  std::istringstream lines(record);
  for (std::string dir; std::getline(lines, dir);) EXPECT_FALSE(exists(dir)) << dir;
  // Again: nothing to do, said so, not an error.
  r = run_process({bin("ember-jailer"), "--cleanup", "--id", id, "--chroot-base", base_});
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.err.find("nothing to clean up"), std::string::npos) << r.err;
}

TEST_F(Jailer, CleanupKillsARunningVm) {
  const std::string id = new_id("kill");
  // echo with stdin left open runs until killed.
  std::vector<std::string> argv = {"/bin/bash", "-c", ""};
  std::string cmd = "exec";
  for (const auto& a : jailer_argv(id, {}, {guest_program("echo-musl")})) cmd += " '" + a + "'";
  argv[2] = cmd + " < <(exec sleep 30 2>/dev/null)";
  ProcessResult r;
  std::thread t([&] { r = run_process(argv, {}, std::chrono::seconds(25)); });
  for (int i = 0; i < 2000 && !exists(jail_dir(id) + "/root"); i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto c = run_process({bin("ember-jailer"), "--cleanup", "--id", id, "--chroot-base", base_});
  t.join();
  EXPECT_EQ(c.status, 0) << c.err;
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.status, 137) << r.err;
  EXPECT_NE(r.err.find("killed by SIGKILL"), std::string::npos) << r.err;
  EXPECT_FALSE(exists(jail_dir(id)));
}

TEST_F(Jailer, Options) {
  const std::string hello = guest_program("hello-musl");
  // Copies instead of binds.
  auto r = jailed(new_id("copy"), {"--copy-files"}, {hello});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "hello, world\n");
  // A new PID namespace: the VMM is its PID 1.
  r = jailed(new_id("pidns"), {"--new-pid-ns"}, {hello});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "hello, world\n");
  // /dev/net/tun.
  if (exists("/dev/net/tun")) {
    r = jailed(new_id("tun"), {"--tun"}, {hello});
    EXPECT_EQ(r.status, 0) << r.err;
  }
  // Daemonized: the jailer prints the VMM's pid and returns at once.
  r = jailed(new_id("daemon"), {"--daemonize"}, {hello});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_FALSE(r.out.empty());
  EXPECT_EQ(r.out.find_first_not_of("0123456789\n"), std::string::npos) << r.out;
  // The jailer's own args are checked; --help teaches.
  auto h = run_process({bin("ember-jailer"), "--help"});
  EXPECT_EQ(h.status, 0);
  for (const char* w : {"--exec-file", "--cgroup", "--cleanup", "pivot_root", "example"})
    EXPECT_NE(h.out.find(w), std::string::npos) << w;
}

// --detach (what emberd uses): no supervising jailer. ember-jailer exits 0
// once the VMM runs; the VMM is this process's child, named in the jail's
// vmm.pid, confined as ever, and keeps the stdio it was given.
TEST_F(Jailer, DetachHandsTheVmmToTheCaller) {
  const std::string id = new_id("detach");
  int in[2], out[2];
  ASSERT_EQ(pipe2(in, O_CLOEXEC), 0);
  ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, out[1], 2);
  const pid_t jailer =
      spawn_jailer(jailer_argv(id, {"--detach", "--cgroup", "pids.max=32"}, {guest_program("echo-musl")}), &fa);
  posix_spawn_file_actions_destroy(&fa);
  ASSERT_GT(jailer, 0);
  close(in[0]);
  close(out[1]);
  int ws = 0;
  ASSERT_EQ(waitpid(jailer, &ws, 0), jailer);
  EXPECT_TRUE(WIFEXITED(ws) && WEXITSTATUS(ws) == 0) << "ember-jailer's status " << ws;

  // The VMM runs on, ours: its parent is this process, its ids the jail's.
  const std::string pid_text = read_file(jail_dir(id) + "/vmm.pid");
  ASSERT_FALSE(pid_text.empty());
  const pid_t vmm = std::stoi(pid_text);
  const std::string status = read_file("/proc/" + std::to_string(vmm) + "/status");
  EXPECT_EQ(status_field(status, "PPid"), std::to_string(getpid()));
  EXPECT_EQ(status_field(status, "Uid").substr(0, std::to_string(kUid).size()), std::to_string(kUid));
  EXPECT_EQ(status_field(status, "NoNewPrivs"), "1");
  EXPECT_EQ(access(("/proc/" + std::to_string(jailer)).c_str(), F_OK), -1) << "ember-jailer stayed";

  // It serves its stdio, and its status is ours to collect.
  const std::string input = "handed over\n";
  ASSERT_EQ(write(in[1], input.data(), input.size()), static_cast<ssize_t>(input.size()));
  close(in[1]);
  std::string got;
  char buf[4096];
  for (ssize_t n; (n = read(out[0], buf, sizeof buf)) > 0;) got.append(buf, static_cast<size_t>(n));
  close(out[0]);
  EXPECT_EQ(got, input);
  ASSERT_EQ(waitpid(vmm, &ws, 0), vmm);
  EXPECT_TRUE(WIFEXITED(ws) && WEXITSTATUS(ws) == 0) << "the VMM's status " << ws;
  // The jail stays until --cleanup, which removes the pid file with it.
  EXPECT_TRUE(exists(jail_dir(id) + "/vmm.pid"));
  EXPECT_EQ(run_process({bin("ember-jailer"), "--cleanup", "--id", id, "--chroot-base", base_}).status, 0);
  EXPECT_FALSE(exists(jail_dir(id)));
}

TEST_F(Jailer, JoinsANetworkNamespace) {
  if (access("/usr/sbin/ip", X_OK) != 0 && access("/sbin/ip", X_OK) != 0) GTEST_SKIP() << "no ip(8) to make a netns";
  const std::string name = "ember-test-" + std::to_string(getpid());
  auto made = run_process({"/bin/sh", "-c", "ip netns add " + name});
  if (made.status != 0) GTEST_SKIP() << "ip netns add failed: " << made.err;
  // ip(8) makes /var/run/netns/NAME; /var/run is a symlink to /run on
  // Debian, and ember-jailer never follows symlinks.
  const std::string path = (exists("/run/netns/" + name) ? "/run/netns/" : "/var/run/netns/") + name;
  struct stat want;
  ASSERT_EQ(stat(path.c_str(), &want), 0);
  const std::string id = new_id("netns");
  // Run echo with stdin open, check its net namespace, then let it finish.
  std::vector<std::string> argv = {"/bin/bash", "-c", ""};
  std::string cmd = "exec";
  for (const auto& a : jailer_argv(id, {"--netns", path}, {guest_program("echo-musl")})) cmd += " '" + a + "'";
  argv[2] = cmd + " < <(exec sleep 1 2>/dev/null)";
  ProcessResult r;
  std::thread t([&] { r = run_process(argv, {}, std::chrono::seconds(25)); });
  bool found = false;
  for (int i = 0; i < 400 && !found; i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    for (const std::string& p : list_dir("/proc")) {
      if (p.find_first_not_of("0123456789") != std::string::npos) continue;
      if (read_file("/proc/" + p + "/cmdline").find("--id") == std::string::npos ||
          read_file("/proc/" + p + "/cmdline").find(id) == std::string::npos)
        continue;
      struct stat got;
      if (stat(("/proc/" + p + "/ns/net").c_str(), &got) == 0 && status_field(read_file("/proc/" + p + "/status"), "Uid").rfind(std::to_string(kUid), 0) == 0) {
        EXPECT_EQ(got.st_ino, want.st_ino);
        found = true;
      }
    }
  }
  t.join();
  run_process({"/bin/sh", "-c", "ip netns del " + name});
  EXPECT_TRUE(found) << "the jailed VMM was not seen";
  EXPECT_EQ(r.status, 0) << r.err;
}

}  // namespace
}  // namespace ember::testing
