// Machine: one microVM from set-up to exit status. The calling thread becomes
// the event loop (epoll: console input/output, queue notifications via
// ioeventfd, signals, the timeout, the vCPU thread's "stopped"); one vCPU
// thread runs KVM_RUN and dispatches MMIO exits through the Bus.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "vmm/result.h"

namespace ember {

struct MachineConfig {
  std::string kernel_path;
  uint64_t mem_size = 128ull << 20;
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
  // Install the per-thread seccomp allow-lists (jailer/seccomp_filters.h):
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
};

struct RunOutcome {
  int status = 0;     // what ember-vmm exits with
  std::string error;  // if not empty, printed as "ember-vmm: <error>"
};

// Boots the VM and runs it to the end. A set-up failure is an Error (the
// caller prints it and exits 125); everything after the first guest
// instruction ends in a RunOutcome (guest errors included).
Result<RunOutcome> run_machine(const MachineConfig& config);

class Machine;  // machine.cc

// One VM driven from the caller's event loop (API mode, vmm/api_vmm.h): the
// caller polls event_fd() (EPOLLIN) next to its own fds and calls step()
// when it is readable. Everything runs on the caller's thread except the
// vCPU thread.
class MachineRunner {
 public:
  // Sets the VM up and lets the guest run. `config` is copied.
  static Result<std::unique_ptr<MachineRunner>> boot(const MachineConfig& config);
  ~MachineRunner();
  MachineRunner(const MachineRunner&) = delete;
  MachineRunner& operator=(const MachineRunner&) = delete;

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

 private:
  explicit MachineRunner(const MachineConfig& config);
  MachineConfig config_;  // the machine refers to it
  std::unique_ptr<Machine> machine_;
};

// CLOCK_MONOTONIC in nanoseconds.
uint64_t monotonic_ns();

}  // namespace ember
