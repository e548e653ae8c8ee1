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

#include "base/fd.h"
#include "controller/admission.h"
#include "controller/config.h"
#include "controller/function_spec.h"
#include "controller/process.h"
#include "controller/stdio_channel.h"

namespace ember::controller {

struct FunctionVersion;

enum class VmState { kStarting, kReady, kBusy, kStopping };
const char* vm_state_name(VmState s);

struct Vm {
  std::string id;                          // [A-Za-z0-9-], also the jail id
  std::shared_ptr<FunctionVersion> fn;     // keeps the version's files alive while the VM runs
  pid_t pid = -1;                          // ember-vmm, our child (jailed: handed over by ember-jailer --detach)
  Fd pidfd;
  // boot mechanism: the VMM's stdio
  Fd in, out, err;
  // snapshot mechanism: the handshaken vsock stream
  stdio::Connection stdio;
  std::string run_dir;                     // STATE/run/ID (sockets, VMM log)
  std::string vsock_path;                  // host path of the VM's vsock Unix socket
  std::string log_path;                    // the VMM's stderr (snapshot mechanism)
  bool jailed = false;
  Clock::time_point created = Clock::now();
  Clock::time_point parked_at;             // when it last joined its function's ready pool
  std::atomic<VmState> state{VmState::kStarting};
  std::atomic<bool> stop_requested{false}; // emberd killed it (timeout, DELETE, drain, shutdown)
  uint32_t uses = 0;                       // invocations served (snapshot mechanism: reset in place between them)
  uint32_t max_uses = 1;                   // then it exits by itself (ember-vmm restore --repeat)
  Admission::Slot slot;                    // its room on the host (and its uid), given back once it has exited

  // Set once by the reaper, with why it died when the signal says more than
  // its number (vmm_death_verdict), read before the jail is cleaned up.
  void set_exited(ExitStatus s, std::string verdict = "");
  bool exited() const;
  // Waits for the exit until the deadline; true if it has exited.
  bool wait_exit(Clock::time_point deadline);
  ExitStatus exit_status() const;
  std::string death_verdict() const;  // "" unless it was killed and the killer is known
  // Asks for it to die (SIGKILL through the pidfd); idempotent.
  void kill(const std::string& reason);
  // kill(), then waits for the exit until the deadline; true if it exited.
  bool kill_and_wait(const std::string& reason, Clock::time_point deadline);
  std::string stop_reason() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool exited_ = false;
  ExitStatus status_;
  std::string verdict_;
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

// `ember-vmm run [--id ID] --mem-mib M [--kernel K] --image IMG`: boots and
// parks at the program's first read of stdin (stdio over the VMM's own).
// `id` empty: no --id (ember-jailer adds its own).
std::vector<std::string> boot_command(const std::string& id, const FunctionSpec& spec, const VmPaths& p);
// The deploy's template: boots, runs to ready, snapshots into snapshot_dir, exits 0.
std::vector<std::string> template_command(const std::string& id, const FunctionSpec& spec, const VmPaths& p);
// Restores from snapshot_dir; the program's stdio goes over vsock_uds; the VM
// serves `runs` connections, reset in place to the snapshot between them.
std::vector<std::string> restore_command(const std::string& id, uint32_t runs, const VmPaths& p);

// 2 when the unified hierarchy has the memory and pids controllers, else 1.
int detect_cgroup_version();

// Wraps a VMM command in ember-jailer's command line (ember-jailer --help).
struct JailSpec {
  bool detach = false;             // --detach: the VMM becomes the caller's child, no jailer stays
  std::string jailer;
  std::string id;
  uint32_t uid = 0, gid = 0;
  std::string chroot_base;
  int cgroup_version = 1;          // 1 or 2: which keys the limits are written with
  uint64_t memory_limit_bytes = 0;
  uint32_t cpu_quota_pct = 0;
  uint32_t pids_max = 0;
  uint32_t no_file = 0;
  uint64_t fsize_bytes = 0;        // RLIMIT_FSIZE: the largest file the VMM may write
};
std::vector<std::string> jailed_command(const JailSpec& j, const std::vector<std::string>& vmm_command);

// Where ember-jailer puts what the VMM of jail `id` creates (its --vsock-uds
// socket, its --snapshot-at-ready directory) under base name `name`: the
// jail's /run, CHROOT_BASE/ember-vmm/ID/run on the host.
std::string jail_run_path(const std::string& chroot_base, const std::string& id, const std::string& name);

// Private and total resident memory of a process from /proc/PID/statm.
bool read_process_memory(pid_t pid, uint64_t* rss_bytes, uint64_t* private_bytes);
// Its number of threads from /proc/PID/stat; 0 if it cannot be read.
int64_t read_process_threads(pid_t pid);

// The pid ember-jailer --detach left in jail `id` (its vmm.pid), or -1.
pid_t detached_vmm_pid(const std::string& chroot_base, const std::string& id);

// How many processes the memory cgroup of jail `id` has OOM-killed (from
// the record of its cgroups that ember-jailer keeps on the jail directory).
long jail_oom_kills(const std::string& chroot_base, const std::string& id);

// Why a VMM died, in words, when the signal says more than its number: the
// memory cgroup's OOM killer (oom_killed), seccomp (SIGSYS); else "".
std::string vmm_death_verdict(const ExitStatus& st, bool oom_killed);

}  // namespace ember::controller
