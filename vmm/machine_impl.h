// The Machine behind vmm/machine.h's facades, shared by its parts (one file
// per seam): machine_build.cc (the builder: a new VM, its memory, kernel,
// devices and event loop), machine_vcpu.cc (the vCPU thread: its set-up,
// run loop, parking and commands), machine_persist.cc (snapshot save,
// restore and reset in place), machine.cc (the event loop, the end of a
// run, the facades). Private to vmm/.
#pragma once

#include "vmm/machine.h"
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <linux/futex.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cctype>
#include <cinttypes>
#include <climits>
#include <cstddef>
#include <cstring>
#include <memory>
#include <optional>
#include <system_error>
#include <thread>
#include <vector>

#include "api/boot_info.h"
#include "api/guest_layout.h"
#include "seccomp/seccomp.h"
#include "vmm/api_snapshot.h"
#include "vmm/boot.h"
#include "vmm/bus.h"
#include "vmm/console.h"
#include "vmm/control_device.h"
#include "vmm/crc32c.h"
#include "vmm/dead_stack.h"
#include "vmm/elf_loader.h"
#include "vmm/guest_memory.h"
#include "vmm/kvm.h"
#include "vmm/log.h"
#include "vmm/snapshot.h"
#include "vmm/teardown.h"
#include "vmm/vcpu_exit.h"
#include "vmm/vcpu_state.h"
#include "vmm/virtio_mmio.h"
#include "vmm/vmstate.h"
#include "vmm/vsock.h"

namespace ember {

namespace machine_detail {

constexpr int kKickSignal = SIGUSR1;
constexpr uint32_t kGsiBase = 24;  // above the IOAPIC pins, so no default route is in the way
constexpr uint32_t kQueues = 2;    // per console
constexpr uint32_t kVsockIndex = 2;  // device 2: virtio-vsock (kRoleControl)
constexpr int kVsockDrainMs = 10000;  // at the end of a run, how long slow vsock readers get

inline uint64_t realtime_ns() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

inline void no_op_handler(int) {}

// Waiting between threads once the seccomp filters are in: plain futex
// calls (std::atomic::wait may spin with sched_yield first, which the
// filters do not allow).
inline void futex_wait(std::atomic<uint32_t>& word, uint32_t seen) {
  static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAIT_PRIVATE, seen, nullptr, nullptr, 0);
}
inline void futex_wake(std::atomic<uint32_t>& word) {
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr, nullptr, 0);
}

inline Result<Fd> make_eventfd() {
  Fd fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!fd.valid()) return errno_error("eventfd");
  return fd;
}

inline void signal_eventfd(int fd) {
  const uint64_t one = 1;
  ssize_t r;
  do {
    r = ::write(fd, &one, 8);
  } while (r < 0 && errno == EINTR);
}

inline void drain_eventfd(int fd) {
  uint64_t v;
  while (::read(fd, &v, 8) < 0 && errno == EINTR) {
  }
}

// Maps a whole file read-only (size rounded up to pages; the tail reads 0).
inline Result<Mapping> map_readonly(int fd, uint64_t size, const std::string& what) {
  if (size == 0) return Error{what + ": empty file"};
  const uint64_t mapped = (size + abi::kPageSize - 1) & ~(abi::kPageSize - 1);
  void* p = ::mmap(nullptr, mapped, PROT_READ, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) return errno_error("mmap " + what);
  return Mapping(p, mapped);
}

// Event tags in epoll_event.data.u64: kind in the top byte.
enum EventKind : uint64_t { kEvSignal = 1, kEvTimer, kEvVcpu, kEvNotify, kEvFd, kEvVsock, kEvDeviceWork };
constexpr uint64_t tag(EventKind k, uint64_t v = 0) { return (uint64_t{k} << 56) | v; }

// The vsock device's host fds in the event loop's epoll set.
class EpollWatcher : public FdWatcher {
 public:
  explicit EpollWatcher(int epoll_fd) : epoll_fd_(epoll_fd) {}
  void watch(int fd, uint32_t events, uint64_t token) override {
    epoll_event e{};
    e.events = events;
    e.data.u64 = tag(kEvVsock, token);
    if (events == 0) {
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    } else if (::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &e) < 0 && errno == ENOENT) {
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &e);
    }
  }

 private:
  int epoll_fd_;
};

// What the guest's program ended with, as the stdio protocol's exit frame.
inline abi::ExitPayload exit_payload_for(const std::optional<ControlOutcome>& o) {
  if (!o) return abi::ExitPayload{abi::kExitSignal, 9};  // killed (timeout, VMM error): as SIGKILL
  switch (o->kind) {
    case ControlOutcome::kExit: return abi::ExitPayload{abi::kExitCode, o->value & 0xff};
    case ControlOutcome::kSignal: return abi::ExitPayload{abi::kExitSignal, o->value};
    case ControlOutcome::kFault: return abi::ExitPayload{abi::kExitSignal, abi::signal_for_vector(o->value)};
  }
  return abi::ExitPayload{abi::kExitSignal, 9};
}

struct ConsoleSlot {
  VirtioMmioTransport* transport;
  ConsoleDevice* console;
};

}  // namespace machine_detail

using namespace machine_detail;

class Machine {
 public:
  explicit Machine(const MachineConfig& config)
      : config_(config), log_(config.verbose), restoring_(!config.restore_dir.empty()) {
    pause_.store(config.start_paused);  // the vCPU parks before its first KVM_RUN
  }
  ~Machine() {
    stop_vcpu();
    transports_.clear();  // the vsock device unwatches its fds through watcher_
    if (mask_saved_) ::pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
  }

  Result<void> setup();
  Result<RunOutcome> run();
  // The event loop one round at a time (SteppedMachine): waits up to
  // timeout_ms (-1: forever) and handles what is ready; true once the VM ended.
  bool step(int timeout_ms);
  RunOutcome finish();  // stops the vCPU, drains the guest's output, the outcome
  int event_fd() const { return epoll_.get(); }
  // Registers the fds the devices want watched now (step() does at its
  // start and end): a caller polling event_fd() calls it once after
  // setup(), or a restored guest that waits for input would never be fed.
  void watch_fds() { update_fd_interest(); }
  // Parks the vCPU thread outside KVM_RUN (returns once it is parked or has
  // ended); resume() lets it run on.
  void pause();
  void resume();
  bool paused() const { return pause_.load(); }

  // Restored VMs (restore_dir): a run ends with the vCPU idle instead of
  // gone, and reset() starts the next one.
  // The outcome of the run that just ended; the vCPU stays (idle) for a reset.
  RunOutcome end_run();
  Result<void> reset();
  uint64_t resumed_ns();  // waits until the vCPU entered the guest
  uint64_t started_ns() const { return start_ns_; }
  bool stopped_from_outside() const { return stop_outcome_.has_value(); }
  // API mode (config.allow_snapshots): while paused, writes the snapshot's
  // three files (vmm/api_snapshot.h); the bytes of memory written.
  Result<uint64_t> save_snapshot_files(const SnapshotFilePaths& paths);
  uint64_t mem_size() const { return memory_.ram_size(); }
  bool guest_ready() const { return control_ && control_->ready(); }
  uint64_t guest_cid() const { return restoring_ ? snap_.machine.guest_cid : config_.guest_cid; }
  // After the last run: stops the vCPU, prints the trace, hands off teardown.
  void close(const RunOutcome& last);

 private:
  struct Mark {
    const char* what;
    uint64_t ns;
  };
  // Set-up phases the vCPU thread waits for (phase_).
  enum Phase : int { kPhaseInit = 0, kPhaseVmReady = 1, kPhaseGo = 2, kPhaseAbort = 3 };

  void mark(const char* what) { marks_.push_back(Mark{what, monotonic_ns()}); }
  Result<void> setup_signals();
  Result<void> setup_boot();
  Result<void> setup_restore();
  Result<void> setup_devices();
  Result<void> restore_devices();
  Result<void> setup_event_loop();
  Result<void> vcpu_setup_boot();
  Result<void> vcpu_setup_restore();
  Result<void> write_restore_boot_info();
  void kick_device_irqs();
  // Between runs and at the ready point the vCPU thread waits here for the
  // event loop's commands; true: run the guest again.
  bool vcpu_idle();
  enum Command : int { kCmdNone = 0, kCmdSave, kCmdReload };
  Result<void> vcpu_command(Command c, bool wait);
  void wake_vcpu();
  Result<void> write_snapshot();
  // Drains the devices, saves the stopped vCPU and the VM (on the vCPU
  // thread) and serializes it all: the vmstate file's bytes.
  Result<std::vector<uint8_t>> capture_state(uint64_t image_size, uint32_t image_crc);
  void vcpu_save();  // on the vCPU thread: serves kCmdSave
  void prepare_run();
  void set_phase(Phase p);
  bool wait_phase(Phase p);  // false: aborted
  void vcpu_main();
  Result<void> vcpu_setup();
  void vcpu_loop();
  void vcpu_park();
  void stop_vcpu();
  void update_fd_interest();
  void dispatch_fd(int fd, uint32_t events);
  void print_trace(const RunOutcome& out);

  const MachineConfig& config_;
  Log log_;
  std::vector<Mark> marks_;

  Kvm kvm_;
  KvmVm vm_;
  GuestMemory memory_;
  Mapping kernel_file_;
  KernelImage kernel_;
  Bus bus_;
  std::unique_ptr<ControlDevice> control_;
  std::vector<std::unique_ptr<VirtioMmioTransport>> transports_;
  std::vector<ConsoleSlot> consoles_;
  VirtioMmioTransport* vsock_transport_ = nullptr;
  VsockDevice* vsock_ = nullptr;
  std::unique_ptr<EpollWatcher> watcher_;
  std::vector<Fd> irqfds_;
  std::vector<Fd> notify_fds_;
  std::vector<std::pair<uint32_t, uint32_t>> notify_queue_;  // notify_fds_[i] -> (device, queue)
  Fd device_work_fd_;  // a Status write left device work for the event loop (set_device_work_hook)
  abi::BootInfo boot_info_{};   // the vCPU thread adds the clock sample and writes it

  // Snapshots. restoring_: this VM comes from a snapshot (snap_ holds it, as
  // loaded, for resets); otherwise snap_ collects the state at the ready point.
  const bool restoring_;
  SnapshotFiles files_;
  VmSnapshot snap_;
  std::optional<SnapshotWriter> writer_;    // --snapshot-at-ready, prepared before the guest runs
  std::vector<kvm_cpuid_entry2> cpuid_set_;  // what the boot vCPU got (saved in the snapshot)
  std::vector<uint32_t> snapshot_msrs_;     // MSRs to save, tested before the guest runs
  size_t xsave_size_ = 0;
  uint64_t base_generation_ = 0;            // BootInfo.generation in the snapshot
  uint64_t restores_ = 0;                   // restores and resets so far (generation = base + this)
  bool paused_at_ready_ = false;            // the vCPU stopped at the ready point for a snapshot

  Fd epoll_;
  Fd signal_fd_;
  Fd timer_fd_;
  Fd vcpu_done_;
  sigset_t old_mask_{};
  bool mask_saved_ = false;
  std::vector<std::pair<int, uint32_t>> watched_;  // fd -> epoll events registered

  // The vCPU thread starts first thing: it fetches the supported CPUID
  // (slow) while this thread builds the VM, creates and sets up the vCPU once
  // the VM has its irqchip (kPhaseVmReady), and enters the guest once the
  // devices exist (kPhaseGo).
  std::thread vcpu_thread_;
  std::atomic<int> phase_{kPhaseInit};
  std::atomic<bool> stop_{false};
  std::atomic<kvm_run*> run_ptr_{nullptr};  // published once the vCPU exists
  Vcpu vcpu_;                               // owned by the vCPU thread until joined
  ExitCounts counts_;
  ExitDecision vcpu_result_;
  std::string vcpu_message_;
  std::optional<RunOutcome> stop_outcome_;  // why the main thread stopped the VM
  bool vcpu_ended_ = false;                 // the vCPU thread has ended (main thread's view)
  // Pause: the main thread sets pause_ and kicks; the vCPU thread parks
  // outside KVM_RUN and reports it in vcpu_state_ until pause_ is cleared.
  enum VcpuState : int { kVcpuRunning = 0, kVcpuParked = 1, kVcpuEnded = 2, kVcpuIdle = 3 };
  std::atomic<bool> pause_{false};
  std::atomic<int> vcpu_state_{kVcpuRunning};
  // Commands to an idle vCPU thread (vcpu_idle()): cmd_ is posted, wake_
  // bumped; the vCPU thread clears cmd_ when done (cmd_result_ says how).
  std::atomic<uint32_t> cmd_{kCmdNone};
  std::atomic<uint32_t> wake_{0};
  Result<void> cmd_result_;
  std::atomic<uint64_t> resumed_ns_{0};  // set by the vCPU thread right before it enters the guest
  // Restore: the vCPU thread creates the VM while the event loop opens the
  // snapshot (vm_created_: 0 pending, 1 done, -1 failed with vm_error_).
  std::atomic<int> vm_created_{0};
  std::atomic<uint32_t> main_ready_{1};  // reset: the event loop's part is done (1) or failed (2)
  KvmVm created_vm_;
  std::string vm_error_;
  std::atomic<uint32_t> resumed_seq_{0};
  uint64_t start_ns_ = 0;                // when this restore or reset began
  uint64_t cpuid_ns_ = 0, vcpu_ready_ns_ = 0, first_run_ns_ = 0, vcpu_end_ns_ = 0;
  uint64_t last_reset_us_ = 0;
};

}  // namespace ember
