#include "controller/vm.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>

#include "controller/fsutil.h"
#include "jailer/jail_record.h"

namespace ember::controller {

const char* vm_state_name(VmState s) {
  switch (s) {
    case VmState::kStarting: return "starting";
    case VmState::kReady: return "ready";
    case VmState::kBusy: return "busy";
    case VmState::kStopping: return "stopping";
  }
  return "?";
}

void Vm::set_exited(ExitStatus s, std::string verdict) {
  {
    std::lock_guard<std::mutex> l(mu_);
    exited_ = true;
    status_ = s;
    verdict_ = std::move(verdict);
  }
  cv_.notify_all();
}

bool Vm::exited() const {
  std::lock_guard<std::mutex> l(mu_);
  return exited_;
}

bool Vm::wait_exit(Clock::time_point deadline) {
  std::unique_lock<std::mutex> l(mu_);
  return cv_.wait_until(l, deadline, [&] { return exited_; });
}

ExitStatus Vm::exit_status() const {
  std::lock_guard<std::mutex> l(mu_);
  return status_;
}

void Vm::kill(const std::string& reason) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (exited_) return;
    if (!stop_requested.exchange(true)) stop_reason_ = reason;
  }
  state = VmState::kStopping;
  signal_process(pidfd.get(), SIGKILL);
}

bool Vm::kill_and_wait(const std::string& reason, Clock::time_point deadline) {
  kill(reason);
  return wait_exit(deadline);
}

std::string Vm::death_verdict() const {
  std::lock_guard<std::mutex> l(mu_);
  return verdict_;
}

std::string Vm::stop_reason() const {
  std::lock_guard<std::mutex> l(mu_);
  return stop_reason_;
}

std::vector<std::string> boot_command(const std::string& id, const FunctionSpec& spec, const VmPaths& p) {
  // --die-with-parent: no VM outlives emberd, however emberd dies.
  std::vector<std::string> a = {p.vmm, "run", "--die-with-parent"};
  if (!id.empty()) a.insert(a.end(), {"--id", id});
  a.insert(a.end(), {"--mem-mib", std::to_string(spec.memory_mib)});
  if (!p.kernel.empty()) a.insert(a.end(), {"--kernel", p.kernel});
  a.insert(a.end(), {"--image", p.image});
  return a;
}

std::vector<std::string> template_command(const std::string& id, const FunctionSpec& spec, const VmPaths& p) {
  std::vector<std::string> a = boot_command(id, spec, p);
  // stderr is then only the jailer's and the VMM's: the deploy reads it to
  // tell a host failure (500) from the program's (422).
  a.insert(a.end(), {"--program-stderr-on-stdout", "--snapshot-at-ready", p.snapshot_dir});
  return a;
}

std::vector<std::string> restore_command(const std::string& id, uint32_t runs, const VmPaths& p) {
  std::vector<std::string> a = {p.vmm, "restore", "--die-with-parent"};
  if (!id.empty()) a.insert(a.end(), {"--id", id});
  if (runs > 1) a.insert(a.end(), {"--repeat", std::to_string(runs)});
  a.insert(a.end(), {"--vsock-uds", p.vsock_uds, p.snapshot_dir});
  return a;
}

int detect_cgroup_version() {
  std::ifstream f("/sys/fs/cgroup/cgroup.controllers");
  std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return all.find("memory") != std::string::npos && all.find("pids") != std::string::npos ? 2 : 1;
}

std::vector<std::string> jailed_command(const JailSpec& j, const std::vector<std::string>& vmm_command) {
  std::vector<std::string> a = {j.jailer, "--id",  j.id, "--exec-file", vmm_command.at(0), "--uid",
                                std::to_string(j.uid), "--gid", std::to_string(j.gid), "--chroot-base", j.chroot_base,
                                "--cgroup-version", std::to_string(j.cgroup_version)};
  auto cg = [&](const std::string& kv) { a.insert(a.end(), {"--cgroup", kv}); };
  if (j.cgroup_version == 2) {
    if (j.memory_limit_bytes) cg("memory.max=" + std::to_string(j.memory_limit_bytes));
    if (j.cpu_quota_pct) cg("cpu.max=" + std::to_string(j.cpu_quota_pct * 1000) + " 100000");
  } else {
    if (j.memory_limit_bytes) cg("memory.limit_in_bytes=" + std::to_string(j.memory_limit_bytes));
    if (j.cpu_quota_pct) {
      cg("cpu.cfs_period_us=100000");
      cg("cpu.cfs_quota_us=" + std::to_string(j.cpu_quota_pct * 1000));
    }
  }
  if (j.pids_max) cg("pids.max=" + std::to_string(j.pids_max));
  if (j.no_file) a.insert(a.end(), {"--resource-limit", "no-file=" + std::to_string(j.no_file)});
  if (j.fsize_bytes) a.insert(a.end(), {"--resource-limit", "fsize=" + std::to_string(j.fsize_bytes)});
  if (j.detach) a.push_back("--detach");
  a.push_back("--");
  a.insert(a.end(), vmm_command.begin() + 1, vmm_command.end());
  return a;
}

std::string jail_run_path(const std::string& chroot_base, const std::string& id, const std::string& name) {
  return chroot_base + "/ember-vmm/" + id + "/run/" + name;
}

namespace {

std::string jail_dir(const std::string& chroot_base, const std::string& id) {
  return chroot_base + "/ember-vmm/" + id;
}

}  // namespace

pid_t detached_vmm_pid(const std::string& chroot_base, const std::string& id) {
  auto read = read_file(jail_dir(chroot_base, id) + "/" + jail::kJailPidFile, 32);  // "PID\n"
  if (!read) return -1;
  const std::string text = std::move(*read);
  char* end = nullptr;
  const long pid = std::strtol(text.c_str(), &end, 10);
  if (end == text.c_str() || (*end != '\n' && *end != '\0') || pid <= 0 || pid > (1l << 22)) return -1;
  return static_cast<pid_t>(pid);
}

long jail_oom_kills(const std::string& chroot_base, const std::string& id) {
  Fd jail(::open(jail_dir(chroot_base, id).c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!jail.valid()) return 0;
  long kills = 0;
  for (const std::string& dir : jail::read_cgroup_record(jail.get())) kills += jail::oom_kills(dir);
  return kills;
}

std::string vmm_death_verdict(const ExitStatus& st, bool oom_killed) {
  if (!st.signaled) return "";
  if (st.value == SIGKILL && oom_killed)
    return "the kernel's OOM killer stopped it: the VM reached its jail's memory limit (the function's memory_mib "
           "plus jailer.memory_overhead_mib)";
  if (st.value == SIGSYS)
    return "seccomp stopped it (SIGSYS): the VMM made a system call outside its allow-list "
           "(seccomp/seccomp_filters.cc; the kernel log names it: dmesg | grep 'type=1326')";
  return "";
}

bool read_process_memory(pid_t pid, uint64_t* rss_bytes, uint64_t* private_bytes) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/statm", static_cast<int>(pid));
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[256];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return false;
  buf[n] = 0;
  unsigned long size = 0, resident = 0, shared = 0;
  if (std::sscanf(buf, "%lu %lu %lu", &size, &resident, &shared) != 3) return false;
  static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  *rss_bytes = resident * page;
  *private_bytes = (resident > shared ? resident - shared : 0) * page;
  return true;
}

int64_t read_process_threads(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[1024];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  // "pid (comm) state ppid ...": comm may hold anything, so count fields
  // from its closing parenthesis; num_threads is field 20, the 18th after it.
  const char* p = std::strrchr(buf, ')');
  for (int field = 2; p && field < 20; field++) p = std::strchr(p + 1, ' ');
  return p ? std::strtoll(p + 1, nullptr, 10) : 0;
}

}  // namespace ember::controller
