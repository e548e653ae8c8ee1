#include "controller/vm.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>

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

void Vm::set_exited(ExitStatus s) {
  {
    std::lock_guard<std::mutex> l(mu_);
    exited_ = true;
    status_ = s;
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

std::string Vm::stop_reason() const {
  std::lock_guard<std::mutex> l(mu_);
  return stop_reason_;
}

std::vector<std::string> boot_command(const std::string& id, const FunctionSpec& spec, const VmPaths& p) {
  std::vector<std::string> a = {p.vmm, "run", "--id", id, "--mem-mib", std::to_string(spec.memory_mib)};
  if (!p.kernel.empty()) a.insert(a.end(), {"--kernel", p.kernel});
  a.insert(a.end(), {"--image", p.image});
  return a;
}

std::vector<std::string> template_command(const std::string& id, const FunctionSpec& spec, const VmPaths& p) {
  std::vector<std::string> a = boot_command(id, spec, p);
  a.insert(a.end(), {"--snapshot-at-ready", p.snapshot_dir});
  return a;
}

std::vector<std::string> restore_command(const std::string& id, const VmPaths& p) {
  std::vector<std::string> a = {p.vmm, "restore", "--id", id};
  a.insert(a.end(), {"--vsock-uds", p.vsock_uds, p.snapshot_dir});
  return a;
}

std::vector<std::string> jailed_command(const JailSpec& j, const std::vector<std::string>& vmm_command) {
  std::vector<std::string> a = {j.jailer,       "--id",  j.id, "--exec-file", vmm_command.at(0),
                                "--uid",        std::to_string(j.uid), "--gid", std::to_string(j.gid),
                                "--chroot-base", j.chroot_base};
  if (j.cgroup_version) a.insert(a.end(), {"--cgroup-version", std::to_string(j.cgroup_version)});
  if (j.memory_limit_bytes) a.insert(a.end(), {"--cgroup", "memory.max=" + std::to_string(j.memory_limit_bytes)});
  if (j.cpu_quota_pct) a.insert(a.end(), {"--cgroup", "cpu.max=" + std::to_string(j.cpu_quota_pct * 1000) + " 100000"});
  if (j.pids_max) a.insert(a.end(), {"--cgroup", "pids.max=" + std::to_string(j.pids_max)});
  if (j.no_file) a.insert(a.end(), {"--resource-limit", "no-file=" + std::to_string(j.no_file)});
  a.push_back("--");
  a.insert(a.end(), vmm_command.begin() + 1, vmm_command.end());
  return a;
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

}  // namespace ember::controller
