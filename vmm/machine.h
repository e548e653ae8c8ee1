// Machine: one microVM from set-up to exit status. The calling thread becomes
// the event loop (epoll: console input/output, queue notifications via
// ioeventfd, signals, the timeout, the vCPU thread's "stopped"); one vCPU
// thread runs KVM_RUN and dispatches MMIO exits through the Bus.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/clock.h"
#include "base/result.h"

namespace ember {

struct MachineConfig {
  std::string kernel_path;
  uint64_t mem_size = 128ull << 20;
  // Boot: ask for transparent huge pages for guest RAM (MADV_HUGEPAGE), so
  // that its first touch costs one fault per 2 MiB instead of 512. Each
  // touched 2 MiB then costs 2 MiB of host memory. Restores map the
  // snapshot's memory file and are never backed by huge pages.
  bool huge_pages = false;
  // The function image: a read-only host range the caller keeps mapped for
  // the whole run (vmm/program_image.h), image_mapped bytes (page-rounded) of
  // which image_size are the image. nullptr: no image.
  const uint8_t* image = nullptr;
  uint64_t image_size = 0;
  uint64_t image_mapped = 0;
  uint64_t timeout_ms = 0;  // 0: no timeout
  int stdin_fd = 0;
  int stdout_fd = 1;
  int stderr_fd = 2;
  bool verbose = false;
  bool trace = false;  // print boot timestamps and exit counts (stderr)
  std::string cmdline;
  uint64_t t0_ns = 0;  // CLOCK_MONOTONIC when the process started (tracing); 0: at run_machine()
  // Leave the slow VM destruction (~15 ms) to a detached helper process
  // (vmm/teardown.h). For ember-vmm, which exits right after; not for
  // in-process users.
  bool detach_teardown = false;
  // Install the per-thread seccomp allow-lists (seccomp/seccomp_filters.h):
  // the main thread's once the VM is built, each vCPU thread's right before
  // its first KVM_RUN. ember-vmm turns this on (unless --no-seccomp); not
  // for in-process users (the filter would confine the caller's thread).
  bool seccomp = false;
  // Tests only (ember-vmm-testing): called on each thread right after its
  // filter is installed, with "main" or "vcpu".
  void (*after_seccomp)(const char* thread) = nullptr;
  // false: the caller owns SIGINT/SIGTERM/SIGHUP/SIGQUIT (API mode); the
  // machine still blocks them but neither reads nor acts on them.
  bool handle_signals = true;

  // The image file the image came from (`--image`), hard-linked into a
  // snapshot where possible; empty: the image is copied.
  std::string image_path;
  // virtio-vsock (device 2): host clients connect to this Unix socket
  // (vmm/vsock.h); empty: no listener (the device exists all the same).
  std::string vsock_uds;
  uint64_t guest_cid = 3;  // abi::kDefaultGuestCid
  // `run --snapshot-at-ready DIR`: at the guest's first "ready" (the program
  // blocks reading stdin), pause, write the snapshot to DIR (vmm/snapshot.h)
  // and end with status 0. The directory is prepared before the guest runs.
  std::string snapshot_dir;
  // `restore DIR`: the VM comes from this snapshot instead of kernel_path and
  // the image (which are ignored; mem_size too).
  std::string restore_dir;
  // Console input from this buffer (every run starts it over) instead of
  // stdin_fd; restore --repeat feeds each run the same stdin this way.
  const std::string* stdin_data = nullptr;

  // API mode (vmm/api_vmm.h). allow_snapshots: the VM may be snapshotted
  // whenever it is paused (what to save is decided before the guest runs,
  // as for --snapshot-at-ready). start_paused: the vCPU parks before its
  // first KVM_RUN (a loaded snapshot that is not resumed yet).
  // restore_mem_path: restore_dir is then the state file, and the memory and
  // image files are these (vmm/api_snapshot.h).
  bool allow_snapshots = false;
  bool start_paused = false;
  std::string restore_mem_path;
  std::string restore_image_path;
};

struct RunOutcome {
  int status = 0;     // what ember-vmm exits with
  std::string error;  // if not empty, printed as "ember-vmm: <error>"
};

// Boots the VM and runs it to the end. A set-up failure is an Error (the
// caller prints it and exits 125); everything after the first guest
// instruction ends in a RunOutcome (guest errors included). With
// config.restore_dir, the VM is restored from that snapshot instead.
Result<RunOutcome> run_machine(const MachineConfig& config);

// `ember-vmm restore DIR --repeat N`: restores the VM and runs the program
// `repeat` times, resetting the VM in place (vmm/README.md) between runs.
// The outcome is the last run's; a VMM failure, timeout or signal ends the
// series early with that outcome.
Result<RunOutcome> restore_and_run(const MachineConfig& config, uint64_t repeat);

class Machine;  // machine.cc
struct SnapshotFilePaths;  // vmm/api_snapshot.h

// A VM restored from a snapshot, for in-process use (benchmarks, tests): run
// the program, put the VM back to the snapshot in place, run it again.
class RestoredMachine {
 public:
  // Restores the VM from config.restore_dir and lets the guest run on from
  // its ready point (it waits for input). `config` is copied.
  static Result<std::unique_ptr<RestoredMachine>> restore(const MachineConfig& config);
  ~RestoredMachine();
  RestoredMachine(const RestoredMachine&) = delete;
  RestoredMachine& operator=(const RestoredMachine&) = delete;

  // Serves the guest until the program ends; the outcome of this run.
  RunOutcome run();
  // Back to the snapshot: memory (private pages dropped), vCPU, irqchip,
  // clock and devices; a new generation, clock pair and seed in the boot
  // info; the guest runs on. Only after run() returned.
  Result<void> reset();
  // CLOCK_MONOTONIC when the vCPU last entered the guest after restore() or
  // reset() (waits for that moment), and when that restore or reset began.
  uint64_t resumed_ns();
  uint64_t started_ns() const;

 private:
  explicit RestoredMachine(const MachineConfig& config);
  MachineConfig config_;
  std::unique_ptr<Machine> machine_;
};
// One VM driven from the caller's event loop (API mode, vmm/api_vmm.h): the
// caller polls event_fd() (EPOLLIN) next to its own fds and calls step()
// when it is readable. Everything runs on the caller's thread except the
// vCPU thread.
class SteppedMachine {
 public:
  // Sets the VM up and lets the guest run. `config` is copied.
  static Result<std::unique_ptr<SteppedMachine>> boot(const MachineConfig& config);
  ~SteppedMachine();
  SteppedMachine(const SteppedMachine&) = delete;
  SteppedMachine& operator=(const SteppedMachine&) = delete;

  int event_fd() const;
  // Handles what is ready without blocking; true once the VM has ended.
  bool step();
  // Stops the vCPU if it still runs, writes out the guest's queued output,
  // and says how the VM ended. Call once.
  RunOutcome finish();
  // Parks the vCPU outside KVM_RUN and returns once it is (devices keep
  // serving the host side); resume() lets it run on. Both idempotent.
  void pause();
  void resume();
  bool paused() const;
  // While paused, with config.allow_snapshots: writes the snapshot's files;
  // the bytes of memory written.
  Result<uint64_t> save_snapshot(const SnapshotFilePaths& paths);
  uint64_t mem_size() const;
  uint64_t guest_cid() const;
  // The program has reported "ready" (it first blocked reading stdin).
  bool guest_ready() const;

 private:
  explicit SteppedMachine(const MachineConfig& config);
  MachineConfig config_;  // the machine refers to it
  std::unique_ptr<Machine> machine_;
};

}  // namespace ember
