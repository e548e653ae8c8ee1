// One microVM as emberd sees it: a VMM process (jailed or not) owned through
// a pidfd, the channel to its program, its state, and its exit status (set by
// the Reaper). And VmCommand: the command lines that start VMs, pure and
// unit-tested.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "controller/config.h"
#include "controller/function_spec.h"
#include "controller/process.h"
#include "controller/stdio_channel.h"
#include "vmm/fd.h"

namespace ember::controller {

struct FunctionVersion;

enum class VmState { kStarting, kReady, kBusy, kStopping };
const char* vm_state_name(VmState s);

struct Vm {
  std::string id;                          // [A-Za-z0-9-], also the jail id
  std::shared_ptr<FunctionVersion> fn;     // keeps the version's files alive while the VM runs
  pid_t pid = -1;
  Fd pidfd;
  // boot mechanism: the VMM's stdio
  Fd in, out, err;
  // snapshot mechanism: the handshaken vsock stream, and bytes read past the handshake
  Fd sock;
  std::string leftover;
  std::string run_dir;                     // STATE/run/ID (sockets, VMM log)
  std::string vsock_path;                  // host path of the VM's vsock Unix socket
  std::string log_path;                    // the VMM's stderr (snapshot mechanism)
  bool jailed = false;
  Clock::time_point created = Clock::now();
  std::atomic<VmState> state{VmState::kStarting};
  std::atomic<uint64_t> rss_bytes{0};      // resident (sampled)
  std::atomic<uint64_t> mem_bytes{0};      // private resident: what the VM costs the host (sampled or estimated)
  std::atomic<bool> stop_requested{false}; // emberd killed it (timeout, DELETE, drain, shutdown)

  // Set once by the reaper.
  void set_exited(ExitStatus s);
  bool exited() const;
  // Waits for the exit until the deadline; true if it has exited.
  bool wait_exit(Clock::time_point deadline);
  ExitStatus exit_status() const;
  // Asks for it to die (SIGKILL through the pidfd); idempotent.
  void kill(const std::string& reason);
  std::string stop_reason() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool exited_ = false;
  ExitStatus status_;
  std::string stop_reason_;
};

// What a VMM needs to start: paths as the VMM will see them.
struct VmPaths {
  std::string vmm;          // ember-vmm binary
  std::string kernel;       // --kernel, empty: the VMM's default
  std::string image;        // the function image
  std::string snapshot_dir; // the template snapshot
  std::string vsock_uds;    // the VM's vsock Unix socket
};

// `ember-vmm run --id ID --mem-mib M [--kernel K] --image IMG`: boots and
// parks at the program's first read of stdin (stdio over the VMM's own).
std::vector<std::string> boot_command(const std::string& id, const FunctionSpec& spec, const VmPaths& p);
// The deploy's template: boots, runs to ready, snapshots into snapshot_dir, exits 0.
std::vector<std::string> template_command(const std::string& id, const FunctionSpec& spec, const VmPaths& p);
// Restores from snapshot_dir; the program's stdio goes over vsock_uds.
std::vector<std::string> restore_command(const std::string& id, const VmPaths& p);

// Wraps a VMM command in ember-jailer (issue 5's command line).
struct JailSpec {
  std::string jailer;
  std::string id;
  uint32_t uid = 0, gid = 0;
  std::string chroot_base;
  int cgroup_version = 0;
  uint64_t memory_limit_bytes = 0;
  uint32_t cpu_quota_pct = 0;
  uint32_t pids_max = 0;
  uint32_t no_file = 0;
  std::vector<std::string> files;  // host files the VMM needs inside the jail
};
std::vector<std::string> jailed_command(const JailSpec& j, const std::vector<std::string>& vmm_command);

// Private and total resident memory of a process from /proc/PID/statm.
bool read_process_memory(pid_t pid, uint64_t* rss_bytes, uint64_t* private_bytes);

}  // namespace ember::controller
