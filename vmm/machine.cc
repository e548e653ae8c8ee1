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

namespace {

constexpr int kKickSignal = SIGUSR1;
constexpr uint32_t kGsiBase = 24;  // above the IOAPIC pins, so no default route is in the way
constexpr uint32_t kQueues = 2;    // per console
constexpr uint32_t kVsockIndex = 2;  // device 2: virtio-vsock (kRoleControl)
constexpr int kVsockDrainMs = 10000;  // at the end of a run, how long slow vsock readers get

uint64_t realtime_ns() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

void no_op_handler(int) {}

// Waiting between threads once the seccomp filters are in: plain futex
// calls (std::atomic::wait may spin with sched_yield first, which the
// filters do not allow).
void futex_wait(std::atomic<uint32_t>& word, uint32_t seen) {
  static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAIT_PRIVATE, seen, nullptr, nullptr, 0);
}
void futex_wake(std::atomic<uint32_t>& word) {
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr, nullptr, 0);
}

Result<Fd> make_eventfd() {
  Fd fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!fd.valid()) return errno_error("eventfd");
  return fd;
}

void signal_eventfd(int fd) {
  const uint64_t one = 1;
  ssize_t r;
  do {
    r = ::write(fd, &one, 8);
  } while (r < 0 && errno == EINTR);
}

void drain_eventfd(int fd) {
  uint64_t v;
  while (::read(fd, &v, 8) < 0 && errno == EINTR) {
  }
}

// Maps a whole file read-only (size rounded up to pages; the tail reads 0).
Result<Mapping> map_readonly(int fd, uint64_t size, const std::string& what) {
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
abi::ExitPayload exit_payload_for(const std::optional<ControlOutcome>& o) {
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

}  // namespace

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
  // The event loop one round at a time (MachineRunner): waits up to
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
  Vm vm_;
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
  Vm created_vm_;
  std::string vm_error_;
  std::atomic<uint32_t> resumed_seq_{0};
  uint64_t start_ns_ = 0;                // when this restore or reset began
  uint64_t cpuid_ns_ = 0, vcpu_ready_ns_ = 0, first_run_ns_ = 0, vcpu_end_ns_ = 0;
  uint64_t last_reset_us_ = 0;
};

void Machine::set_phase(Phase p) {
  phase_.store(p, std::memory_order_release);
  phase_.notify_all();
}

bool Machine::wait_phase(Phase p) {
  for (;;) {
    const int now = phase_.load(std::memory_order_acquire);
    if (now == kPhaseAbort) return false;
    if (now >= p) return true;
    phase_.wait(now, std::memory_order_acquire);
  }
}

Result<void> Machine::setup_signals() {
  // SIGINT/SIGTERM/SIGHUP/SIGQUIT end the VM cleanly through the event loop
  // (signalfd). Blocked before any thread exists, so every thread inherits
  // the mask; the vCPU thread then unblocks only the kick signal.
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) sigaddset(&set, s);
  sigaddset(&set, kKickSignal);
  if (::pthread_sigmask(SIG_BLOCK, &set, &old_mask_) != 0) return Error{"pthread_sigmask failed"};
  mask_saved_ = true;
  sigdelset(&set, kKickSignal);
  if (config_.handle_signals) {
    signal_fd_ = Fd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!signal_fd_.valid()) return errno_error("signalfd");
  }
  struct sigaction sa{};
  sa.sa_handler = no_op_handler;  // no SA_RESTART: KVM_RUN must return EINTR
  sigemptyset(&sa.sa_mask);
  if (::sigaction(kKickSignal, &sa, nullptr) < 0) return errno_error("sigaction");
  // A closed stdout/stderr reader shows up as EPIPE on write, not as death.
  ::signal(SIGPIPE, SIG_IGN);
  return Ok();
}

Result<void> Machine::setup() {
  start_ns_ = monotonic_ns();
  mark("setup_start");
  EMBER_TRY(kvm_, Kvm::open());
  mark("kvm_open");
  EMBER_TRY_VOID(setup_signals());
  EMBER_TRY(vcpu_done_, make_eventfd());
  EMBER_TRY(device_work_fd_, make_eventfd());
  mark("signals");
  // A host out of tasks (pid_max, threads-max, pids.max) refuses the
  // thread with EAGAIN: a one-line error and a clean exit, not an uncaught
  // std::system_error.
  try {
    vcpu_thread_ = std::thread([this] { vcpu_main(); });
  } catch (const std::system_error& e) {
    return Error{std::string("cannot create the vCPU thread: ") + e.what() +
                 (e.code().value() == EAGAIN ? " (the host is out of tasks: kernel.pid_max, kernel.threads-max, "
                                               "pids.max or RLIMIT_NPROC)"
                                             : "")};
  }
  mark("spawn");
  if (restoring_) EMBER_TRY_VOID(setup_restore());
  else EMBER_TRY_VOID(setup_boot());

  EMBER_TRY_VOID(setup_event_loop());
  if (!config_.vsock_uds.empty()) {
    EMBER_TRY_VOID(vsock_transport_->locked([&](VirtioDevice&) { return vsock_->listen(config_.vsock_uds, watcher_.get()); }));
    // A restored guest sits at its ready point, listening: open its stdio
    // connection now, so that a client's CONNECT is answered at once.
    if (restoring_) vsock_transport_->locked([&](VirtioDevice&) { vsock_->preconnect(abi::kStdioPort); });
  }
  if (config_.seccomp) {  // before the guest's first instruction (kPhaseGo)
    EMBER_TRY_VOID(seccomp::install(seccomp::Thread::kMain));
    if (config_.after_seccomp) config_.after_seccomp("main");
  }
  set_phase(kPhaseGo);
  mark("event_loop");
  return Ok();
}

Result<void> Machine::setup_boot() {
  EMBER_TRY(vm_, kvm_.create_vm());
  mark("create_vm");

  // Memory slots first, then the irqchip (PLATFORM.md: the other order costs ms).
  EMBER_TRY(memory_, GuestMemory::create(config_.mem_size));
  EMBER_TRY_VOID(vm_.set_memory_region(0, 0, memory_.ram(), memory_.ram_size(), false));
  uint64_t image_mapped = 0;
  if (config_.image) {
    image_mapped = config_.image_mapped;
    if (config_.image_size > abi::kMaxImageSize || image_mapped % abi::kPageSize || image_mapped < config_.image_size)
      return Error{"image too large (" + std::to_string(config_.image_size >> 20) + " MiB, max " +
                   std::to_string(abi::kMaxImageSize >> 20) + " MiB)"};
    auto* host = const_cast<uint8_t*>(config_.image);  // a read-only slot: never written through
    EMBER_TRY_VOID(vm_.set_memory_region(1, abi::kImageGpa, host, image_mapped, true));
    EMBER_TRY_VOID(memory_.add_borrowed(abi::kImageGpa, std::span<uint8_t>(host, image_mapped), false));
  }
  mark("memory");
  EMBER_TRY_VOID(vm_.create_irqchip());
  mark("irqchip");

  // The guest kernel.
  {
    Fd fd(::open(config_.kernel_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return errno_error("kernel " + config_.kernel_path);
    struct stat st;
    if (::fstat(fd.get(), &st) < 0) return errno_error("kernel " + config_.kernel_path);
    if (!S_ISREG(st.st_mode)) return Error{"kernel " + config_.kernel_path + ": not a regular file"};
    EMBER_TRY(kernel_file_, map_readonly(fd.get(), static_cast<uint64_t>(st.st_size), "kernel " + config_.kernel_path));
    const std::span<const uint8_t> bytes(kernel_file_.bytes(), static_cast<size_t>(st.st_size));
    EMBER_TRY(kernel_, parse_kernel_elf(bytes, config_.kernel_path));
    EMBER_TRY_VOID(load_kernel(kernel_, bytes, memory_, /*memory_is_zero=*/true));
  }
  set_phase(kPhaseVmReady);  // the vCPU thread creates and sets up the vCPU meanwhile
  mark("kernel");
  EMBER_TRY_VOID(write_system_tables(memory_, kernel_, image_mapped ? abi::kImageGpa : 0, image_mapped));

  EMBER_TRY_VOID(setup_devices());
  for (uint32_t i = 0; i < transports_.size(); i++) {
    EMBER_TRY_VOID(transports_[i]->preconfigure(
        [i](uint32_t q) { return abi::queue_gpa(i, q); }, abi::kQueueSize, abi::kQueueAvailOffset,
        abi::kQueueUsedOffset));
  }
  mark("devices");

  if (!config_.snapshot_dir.empty()) {
    // Everything that touches the file system happens now, before the guest
    // runs: the snapshot directory is created with the image in it.
    if (!config_.image) return Error{"--snapshot-at-ready needs an image"};
    auto w = SnapshotWriter::prepare(config_.snapshot_dir, memory_.ram_size(), config_.image, config_.image_size,
                                     config_.image_path);
    if (!w) return Error{"snapshot " + config_.snapshot_dir + ": " + w.message()};
    writer_.emplace(std::move(*w));
    mark("snapshot_prepared");
  }
  if (writer_ || config_.allow_snapshots) {
    xsave_size_ = static_cast<size_t>(std::max(vm_.check_extension(KVM_CAP_XSAVE2), 4096));
    if (vm_.check_extension(KVM_CAP_XSAVE) <= 0) xsave_size_ = 0;
  }

  // Boot info; the vCPU thread adds the clock sample, taken as close to the
  // first guest instruction as it can be.
  BootParams p;
  p.mem_size = memory_.ram_size();
  p.image_gpa = image_mapped ? abi::kImageGpa : 0;
  p.image_size = config_.image_size;
  p.flags = abi::kBootPreconfigured | abi::kBootHasControl;
  p.cmdline = config_.cmdline;
  p.devices = {BootDevice{abi::kVirtioIdConsole, abi::kRoleStdio, kQueues},
               BootDevice{abi::kVirtioIdConsole, abi::kRoleStderr, kQueues},
               BootDevice{abi::kVirtioIdVsock, abi::kRoleControl, 3}};
  if (::getrandom(p.random_seed, sizeof p.random_seed, 0) != static_cast<ssize_t>(sizeof p.random_seed))
    return errno_error("getrandom");
  EMBER_TRY(boot_info_, make_boot_info(p));
  boot_info_.guest_cid = config_.guest_cid;
  return Ok();
}

Result<void> Machine::setup_restore() {
  {
    // restore_mem_path (API mode): restore_dir is the state file and the
    // memory and image files are named apart.
    auto f = config_.restore_mem_path.empty()
                 ? open_snapshot(config_.restore_dir)
                 : open_snapshot_files(config_.restore_dir, config_.restore_mem_path, config_.restore_image_path);
    if (!f) return Error{"snapshot " + f.message()};
    files_ = std::move(*f);
  }
  snap_ = files_.state;
  if (config_.allow_snapshots) {  // a snapshot of this VM saves what the loaded one had
    cpuid_set_ = snap_.vcpu.cpuid;
    snapshot_msrs_.clear();
    for (const auto& m : snap_.vcpu.msrs) snapshot_msrs_.push_back(m.first);
    xsave_size_ = snap_.vcpu.xsave.size();
  }
  const VmSnapshot& s = snap_;
  // This VMM builds exactly three devices; a snapshot must have been taken
  // with the same set.
  const uint32_t want[][2] = {{abi::kVirtioIdConsole, abi::kRoleStdio},
                              {abi::kVirtioIdConsole, abi::kRoleStderr},
                              {abi::kVirtioIdVsock, abi::kRoleControl}};
  bool devices_ok = s.devices.size() == std::size(want);
  for (size_t i = 0; devices_ok && i < s.devices.size(); i++)
    devices_ok = s.devices[i].device_id == want[i][0] && s.devices[i].role == want[i][1];
  if (!devices_ok)
    return Error{"snapshot " + config_.restore_dir + ": its devices are not the ones this ember-vmm builds "
                 "(console, console, vsock)"};
  if (s.devices[kVsockIndex].vsock.guest_cid != s.machine.guest_cid)
    return Error{"snapshot " + config_.restore_dir + ": vsock CID disagrees with the machine's"};
  mark("snapshot_open");

  // The vCPU thread created the VM meanwhile.
  for (int st; (st = vm_created_.load()) == 0;) vm_created_.wait(st);
  if (vm_created_.load() < 0) return Error{vm_error_};
  vm_ = std::move(created_vm_);
  mark("create_vm");
  // RAM: the memory file, copy-on-write. Pages the guest never writes stay
  // the page cache's, shared by every VM restored from this file.
  const uint64_t mem_size = s.machine.mem_size;
  void* ram = ::mmap(nullptr, mem_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, files_.mem.get(), 0);
  if (ram == MAP_FAILED) return errno_error("mmap " + config_.restore_dir + "/" + kMemFile);
  EMBER_TRY_VOID(memory_.add_region(0, mem_size, Mapping(ram, mem_size), true));
  EMBER_TRY_VOID(vm_.set_memory_region(0, 0, memory_.ram(), memory_.ram_size(), false));
  auto* image = files_.image.bytes();
  EMBER_TRY_VOID(vm_.set_memory_region(1, abi::kImageGpa, image, files_.image.size(), true));
  EMBER_TRY_VOID(memory_.add_borrowed(abi::kImageGpa, std::span<uint8_t>(image, files_.image.size()), false));
  mark("memory");
  EMBER_TRY_VOID(vm_.create_irqchip());
  mark("irqchip");
  set_phase(kPhaseVmReady);  // the vCPU thread creates the vCPU and loads its state meanwhile

  EMBER_TRY_VOID(setup_devices());
  EMBER_TRY_VOID(restore_devices());
  mark("devices");
  auto gen = memory_.read_obj<uint64_t>(abi::kBootInfoGpa + offsetof(abi::BootInfo, generation));
  base_generation_ = gen ? *gen : 0;
  return Ok();
}

Result<void> Machine::restore_devices() {
  control_->restore(snap_.control_ready);
  for (uint32_t i = 0; i < transports_.size(); i++) {
    const DeviceSnapshot& d = snap_.devices[i];
    if (i < consoles_.size()) consoles_[i].transport->locked([&](VirtioDevice&) { consoles_[i].console->restore(d.console); });
    auto r = transports_[i]->restore(d.transport);
    if (!r) return Error{"snapshot " + config_.restore_dir + ": device " + std::to_string(i) + ": " + r.message()};
  }
  return Ok();
}

Result<void> Machine::setup_devices() {
  control_ = std::make_unique<ControlDevice>(memory_, &log_);
  EMBER_TRY_VOID(bus_.add(abi::kControlGpa, abi::kPageSize, control_.get(), "control page"));

  struct Spec {
    int in_fd, out_fd;
  };
  const Spec specs[] = {{config_.stdin_fd, config_.stdout_fd}, {-1, config_.stderr_fd}};
  const uint64_t guest_cid = restoring_ ? snap_.machine.guest_cid : config_.guest_cid;
  std::vector<Vm::MsiRoute> routes;
  for (uint32_t i = 0; i < std::size(specs) + 1; i++) {
    EMBER_TRY(Fd irq, make_eventfd());
    const int irq_fd = irq.get();
    std::unique_ptr<VirtioDevice> dev;
    std::string name;
    if (i < std::size(specs)) {
      auto console = std::make_unique<ConsoleDevice>(specs[i].in_fd, specs[i].out_fd, &log_);
      ConsoleDevice* raw = console.get();
      if (i == 0 && config_.stdin_data) {
        raw->set_input_buffer(config_.stdin_data);
      } else if (specs[i].in_fd >= 0) {
        // epoll refuses regular files and /dev/null: read those eagerly.
        epoll_event ev{};
        ev.events = EPOLLIN;
        Fd probe(::epoll_create1(EPOLL_CLOEXEC));
        const bool pollable = probe.valid() && ::epoll_ctl(probe.get(), EPOLL_CTL_ADD, specs[i].in_fd, &ev) == 0;
        raw->set_input_pollable(pollable);
      }
      consoles_.push_back(ConsoleSlot{nullptr, raw});
      dev = std::move(console);
      name = "virtio-console " + std::to_string(i);
    } else {
      auto vsock = std::make_unique<VsockDevice>(guest_cid, &log_);
      vsock_ = vsock.get();
      dev = std::move(vsock);
      name = "virtio-vsock";
    }
    const uint32_t queues = dev->queue_count();
    auto transport = std::make_unique<VirtioMmioTransport>(
        std::move(dev), memory_, [irq_fd] { signal_eventfd(irq_fd); }, &log_);
    if (i < consoles_.size()) consoles_[i].transport = transport.get();
    else vsock_transport_ = transport.get();
    const uint64_t base = abi::kVirtioMmioBase + i * abi::kVirtioMmioStride;
    EMBER_TRY_VOID(bus_.add(base, abi::kVirtioMmioStride, transport.get(), name));

    std::vector<int> fds;
    for (uint32_t q = 0; q < queues; q++) {
      EMBER_TRY(Fd nfd, make_eventfd());
      EMBER_TRY_VOID(vm_.add_ioeventfd(nfd.get(), base + abi::kMmioQueueNotify, 4, q));
      fds.push_back(nfd.get());
      notify_fds_.push_back(std::move(nfd));
      notify_queue_.emplace_back(i, q);
    }
    // A QueueNotify that still reaches us (datamatch miss, or no ioeventfd)
    // is handed to the event loop like an ioeventfd would be.
    transport->set_notify_hook([fds](uint32_t q) {
      if (q < fds.size()) signal_eventfd(fds[q]);
    });
    transport->set_device_work_hook([fd = device_work_fd_.get()] { signal_eventfd(fd); });

    routes.push_back(Vm::MsiRoute{kGsiBase + i, abi::kLapicGpa, abi::kDeviceVectorBase + i});
    irqfds_.push_back(std::move(irq));
    transports_.push_back(std::move(transport));
  }
  EMBER_TRY_VOID(vm_.set_msi_routes(routes));
  for (uint32_t i = 0; i < irqfds_.size(); i++) EMBER_TRY_VOID(vm_.add_irqfd(irqfds_[i].get(), kGsiBase + i));
  return Ok();
}

Result<void> Machine::setup_event_loop() {
  epoll_ = Fd(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_.valid()) return errno_error("epoll_create1");
  watcher_ = std::make_unique<EpollWatcher>(epoll_.get());
  auto add = [this](int fd, uint64_t t) -> Result<void> {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = t;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) return errno_error("epoll_ctl");
    return Ok();
  };

  if (signal_fd_.valid()) EMBER_TRY_VOID(add(signal_fd_.get(), tag(kEvSignal)));
  EMBER_TRY_VOID(add(vcpu_done_.get(), tag(kEvVcpu)));
  EMBER_TRY_VOID(add(device_work_fd_.get(), tag(kEvDeviceWork)));
  for (uint32_t i = 0; i < notify_fds_.size(); i++) EMBER_TRY_VOID(add(notify_fds_[i].get(), tag(kEvNotify, i)));

  if (config_.timeout_ms) {
    timer_fd_ = Fd(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    if (!timer_fd_.valid()) return errno_error("timerfd_create");
    itimerspec its{};
    its.it_value.tv_sec = static_cast<time_t>(config_.timeout_ms / 1000);
    its.it_value.tv_nsec = static_cast<long>((config_.timeout_ms % 1000) * 1000000);
    if (::timerfd_settime(timer_fd_.get(), 0, &its, nullptr) < 0) return errno_error("timerfd_settime");
    EMBER_TRY_VOID(add(timer_fd_.get(), tag(kEvTimer)));
  }
  return Ok();
}

Result<void> Machine::vcpu_setup() { return restoring_ ? vcpu_setup_restore() : vcpu_setup_boot(); }

Result<void> Machine::vcpu_setup_boot() {
  EMBER_TRY_VOID(kvm_.load_supported_cpuid());
  cpuid_ns_ = monotonic_ns();
  if (!wait_phase(kPhaseVmReady)) return Error{"aborted"};
  EMBER_TRY(vcpu_, vm_.create_vcpu(0));
  run_ptr_.store(vcpu_.run(), std::memory_order_seq_cst);
  EMBER_TRY_VOID(setup_boot_vcpu(vcpu_, kvm_, kernel_.note));
  if (!config_.snapshot_dir.empty() || config_.allow_snapshots) {
    // What a snapshot will save, decided before the guest runs (and before
    // the seccomp filter): the CPUID table as set, the MSRs that can be
    // read and written back. Probing the MSRs takes a few hundred µs here:
    // done while the event loop still builds the devices, not after.
    const auto entries = kvm_.supported_cpuid_entries();
    cpuid_set_.assign(entries.begin(), entries.end());
    EMBER_TRY(snapshot_msrs_, snapshot_msr_list(kvm_, vcpu_));
  }
  vcpu_ready_ns_ = monotonic_ns();
  if (!wait_phase(kPhaseGo)) return Error{"aborted"};
  // The clock sample: guest TSC and host realtime, read back to back.
  auto khz = vcpu_.tsc_khz();
  boot_info_.tsc_khz = khz ? *khz : 0;
  EMBER_TRY(boot_info_.boot_tsc, vcpu_.get_msr(kMsrTsc));  // IA32_TSC, as the guest reads it
  boot_info_.realtime_ns = realtime_ns();
  EMBER_TRY_VOID(memory_.write_obj(abi::kBootInfoGpa, boot_info_));
  return Ok();
}

Result<void> Machine::vcpu_setup_restore() {
  // KVM_CREATE_VM (~150-450 us here) while the event loop's thread reads and
  // checks the snapshot files.
  {
    auto vm = kvm_.create_vm();
    if (!vm) vm_error_ = vm.message();
    else created_vm_ = std::move(*vm);
    vm_created_.store(vm ? 1 : -1);
    vm_created_.notify_all();
    if (!vm) return Error{"aborted"};
  }
  if (!wait_phase(kPhaseVmReady)) return Error{"aborted"};
  EMBER_TRY(vcpu_, vm_.create_vcpu(0));
  run_ptr_.store(vcpu_.run(), std::memory_order_seq_cst);
  auto r = load_vcpu_state(vcpu_, snap_.vcpu, /*set_cpuid=*/true);
  if (r) r = load_vm_state(vm_, snap_);
  if (!r) return Error{"snapshot " + config_.restore_dir + ": KVM refused its state: " + r.message()};
  vcpu_ready_ns_ = monotonic_ns();
  if (!wait_phase(kPhaseGo)) return Error{"aborted"};
  EMBER_TRY_VOID(write_restore_boot_info());
  kick_device_irqs();
  return Ok();
}

// Device interrupts raised while the devices were restored may have landed
// in the LAPIC before its saved state replaced it: raise them all again once
// the state is in (a spurious one costs the guest one "EOI, iretq").
void Machine::kick_device_irqs() {
  for (const Fd& fd : irqfds_) signal_eventfd(fd.get());
}

// Restore awareness (api/boot_info.h): a new generation, a fresh clock pair
// (guest TSC and host realtime, sampled back to back) and a fresh seed,
// written while the vCPU is stopped, right before it enters the guest.
Result<void> Machine::write_restore_boot_info() {
  restores_++;
  uint8_t seed[32];
  if (::getrandom(seed, sizeof seed, 0) != static_cast<ssize_t>(sizeof seed)) return errno_error("getrandom");
  auto khz = vcpu_.tsc_khz();
  EMBER_TRY(uint64_t tsc, vcpu_.get_msr(kMsrTsc));
  const uint64_t now = realtime_ns();
  const uint64_t gen = base_generation_ + restores_;
  auto put = [&](size_t off, const void* p, size_t n) {
    return memory_.write(abi::kBootInfoGpa + off, std::span<const uint8_t>(static_cast<const uint8_t*>(p), n));
  };
  if (khz && *khz) {
    const uint64_t k = *khz;
    EMBER_TRY_VOID(put(offsetof(abi::BootInfo, tsc_khz), &k, 8));
  }
  EMBER_TRY_VOID(put(offsetof(abi::BootInfo, boot_tsc), &tsc, 8));
  EMBER_TRY_VOID(put(offsetof(abi::BootInfo, realtime_ns), &now, 8));
  EMBER_TRY_VOID(put(offsetof(abi::BootInfo, random_seed), seed, sizeof seed));
  EMBER_TRY_VOID(put(offsetof(abi::BootInfo, generation), &gen, 8));
  return Ok();
}

void Machine::vcpu_main() {
  auto r = vcpu_setup();
  if (r && config_.seccomp) {  // right before the first KVM_RUN
    r = seccomp::install(seccomp::Thread::kVcpu);
    if (r && config_.after_seccomp) config_.after_seccomp("vcpu");
  }
  if (!r) {
    if (!stop_.load() && phase_.load() != kPhaseAbort) {
      vcpu_result_ = ExitDecision{ExitDecision::kFatal, r.message()};
      vcpu_message_ = r.message();
    }
  } else {
    for (;;) {
      vcpu_loop();
      // A restored VM waits for a reset; a VM paused at the ready point
      // waits for the snapshot to be saved.
      if (stop_.load() || !(restoring_ || paused_at_ready_)) break;
      vcpu_end_ns_ = monotonic_ns();
      vcpu_state_.store(kVcpuIdle);
      vcpu_state_.notify_all();
      signal_eventfd(vcpu_done_.get());
      if (!vcpu_idle()) break;
    }
  }
  vcpu_end_ns_ = monotonic_ns();
  vcpu_state_.store(kVcpuEnded);
  vcpu_state_.notify_all();
  signal_eventfd(vcpu_done_.get());
}

bool Machine::vcpu_idle() {
  for (;;) {
    const uint32_t seen = wake_.load();
    if (stop_.load()) return false;
    const uint32_t c = cmd_.load();
    if (c == kCmdSave) {
      vcpu_save();
      continue;
    }
    if (c == kCmdReload) {
      // Reset in place: the vCPU's own state is loaded here while the event
      // loop drops the private pages and restores the devices; the boot
      // info (in guest memory) is written once that is done.
      Result<void> r = complete_pending_io(vcpu_);
      if (r) r = load_vcpu_state(vcpu_, snap_.vcpu, /*set_cpuid=*/false);
      if (r) r = load_vm_state(vm_, snap_);
      for (uint32_t m; (m = main_ready_.load()) == 0;) futex_wait(main_ready_, m);
      if (r && main_ready_.load() != 1) r = Error{"the event loop could not reset the devices"};
      if (r) r = write_restore_boot_info();
      if (r) kick_device_irqs();
      cmd_result_ = r;
      vcpu_result_ = ExitDecision{};
      vcpu_message_.clear();
      cmd_.store(kCmdNone);
      futex_wake(cmd_);
      if (!r) {
        vcpu_result_ = ExitDecision{ExitDecision::kFatal, "reset: " + r.message()};
        vcpu_message_ = vcpu_result_.error;
        signal_eventfd(vcpu_done_.get());
        continue;
      }
      vcpu_state_.store(kVcpuRunning);
      return true;
    }
    futex_wait(wake_, seen);
  }
}

void Machine::vcpu_save() {
  // The event loop has drained the devices (whose interrupts may have
  // changed the LAPIC): now the vCPU and VM state.
  Result<void> r = complete_pending_io(vcpu_);
  if (r) r = save_vcpu_state(vcpu_, snapshot_msrs_, xsave_size_, &snap_.vcpu);
  if (r) r = save_vm_state(vm_, &snap_);
  snap_.vcpu.cpuid = cpuid_set_;
  cmd_result_ = r;
  cmd_.store(kCmdNone);
  futex_wake(cmd_);
}

void Machine::wake_vcpu() {
  wake_.fetch_add(1);
  futex_wake(wake_);
}

Result<void> Machine::vcpu_command(Command c, bool wait) {
  const int st = vcpu_state_.load();
  if (st != kVcpuIdle && !(st == kVcpuParked && c == kCmdSave)) return Error{"the vCPU is not stopped"};
  cmd_.store(static_cast<uint32_t>(c));
  wake_vcpu();
  if (!wait) return Ok();
  for (uint32_t now; (now = cmd_.load()) != kCmdNone;) futex_wait(cmd_, now);
  return cmd_result_;
}

void Machine::vcpu_park() {
  vcpu_state_.store(kVcpuParked);
  vcpu_state_.notify_all();
  // Parked, the vCPU thread also saves its state on request (API snapshots
  // of a paused VM). resume() and stop_vcpu() bump wake_.
  for (;;) {
    const uint32_t seen = wake_.load();
    if (!pause_.load() || stop_.load()) break;
    if (cmd_.load() == kCmdSave) {
      vcpu_save();
      continue;
    }
    futex_wait(wake_, seen);
  }
  vcpu_state_.store(kVcpuRunning);
}

void Machine::pause() {
  const bool already = pause_.exchange(true);  // start_paused: set before the vCPU ever ran
  if (vcpu_state_.load() == kVcpuEnded || !vcpu_thread_.joinable()) return;
  if (!already) {
    if (kvm_run* run = run_ptr_.load(std::memory_order_seq_cst)) run->immediate_exit = 1;
    ::pthread_kill(vcpu_thread_.native_handle(), kKickSignal);
  }
  for (int s; (s = vcpu_state_.load()) == kVcpuRunning;) vcpu_state_.wait(s);
}

void Machine::resume() {
  pause_.store(false);
  wake_vcpu();
}

void Machine::vcpu_loop() {
  sigset_t kick;
  sigemptyset(&kick);
  sigaddset(&kick, kKickSignal);
  ::pthread_sigmask(SIG_UNBLOCK, &kick, nullptr);

  kvm_run* run = vcpu_.run();
  run->immediate_exit = 0;
  const uint64_t now = monotonic_ns();
  if (!first_run_ns_) first_run_ns_ = now;
  resumed_ns_.store(now);
  resumed_seq_.fetch_add(1);
  futex_wake(resumed_seq_);
  for (;;) {
    if (stop_.load(std::memory_order_seq_cst)) {
      vcpu_result_ = ExitDecision{ExitDecision::kContinue, {}};  // stopped from outside
      break;
    }
    if (pause_.load()) {
      vcpu_park();
      continue;
    }
    if (::ioctl(vcpu_.fd(), KVM_RUN, 0) < 0) {
      if (errno == EINTR || errno == EAGAIN) {
        counts_.eintr++;
        run->immediate_exit = 0;
        continue;
      }
      vcpu_result_ = ExitDecision{ExitDecision::kFatal, errno_error("KVM_RUN").message};
      vcpu_message_ = vcpu_result_.error;
      break;
    }
    ExitDecision d = handle_exit(*run, bus_, *control_, counts_, &log_);
    if (d.kind == ExitDecision::kContinue) {
      if (writer_ && !paused_at_ready_ && control_->ready()) {
        // The ready point: finish the control-page write (so that RIP is
        // past it), then stop here for the snapshot.
        auto r = complete_pending_io(vcpu_);
        if (!r) {
          vcpu_result_ = ExitDecision{ExitDecision::kFatal, r.message()};
          vcpu_message_ = r.message();
          break;
        }
        paused_at_ready_ = true;
        vcpu_result_ = ExitDecision{};
        break;
      }
      continue;
    }
    vcpu_result_ = d;
    if (d.kind == ExitDecision::kFatal) {
      auto regs = vcpu_.get_regs();
      std::optional<uint32_t> exc;
      if (auto ev = vcpu_.get_events(); ev && ev->exception.injected) exc = ev->exception.nr;
      vcpu_message_ = describe_fatal_exit(*run, d.error, regs ? regs->rip : 0, exc);
    } else if (auto o = control_->outcome(); o && o->kind == ControlOutcome::kFault) {
      auto regs = vcpu_.get_regs();
      auto sregs = vcpu_.get_sregs();
      std::array<uint64_t, 7> frame{};
      size_t words = 0;
      if (regs)
        for (; words < frame.size(); words++) {
          auto w = memory_.read_obj<uint64_t>(regs->rsp + 8 * words);
          if (!w) break;
          frame[words] = *w;
        }
      vcpu_message_ = describe_fault(o->value, sregs ? sregs->cr2 : 0, std::span<const uint64_t>(frame.data(), words));
    }
    break;
  }
}

void Machine::stop_vcpu() {
  if (!vcpu_thread_.joinable()) return;
  stop_.store(true, std::memory_order_seq_cst);
  pause_.notify_all();  // a parked vCPU sees stop_
  wake_vcpu();          // so does an idle one
  if (phase_.load() < kPhaseGo) set_phase(kPhaseAbort);
  // immediate_exit covers a kick that lands before KVM_RUN is entered; the
  // signal covers a vCPU already inside (halted, or running guest code).
  if (kvm_run* run = run_ptr_.load(std::memory_order_seq_cst)) run->immediate_exit = 1;
  ::pthread_kill(vcpu_thread_.native_handle(), kKickSignal);
  vcpu_thread_.join();
}

void Machine::update_fd_interest() {
  std::array<std::pair<int, uint32_t>, 8> want{};
  size_t n = 0;
  auto want_fd = [&](int fd, uint32_t ev) {
    for (size_t i = 0; i < n; i++)
      if (want[i].first == fd) {
        want[i].second |= ev;
        return;
      }
    if (n < want.size()) want[n++] = {fd, ev};
  };
  for (const ConsoleSlot& c : consoles_) {
    c.transport->locked([&](VirtioDevice&) {
      if (c.console->wants_input()) want_fd(c.console->input_fd(), EPOLLIN);
      if (c.console->wants_output()) want_fd(c.console->output_fd(), EPOLLOUT);
    });
  }
  // Remove or change what is registered, then add what is new.
  for (auto it = watched_.begin(); it != watched_.end();) {
    uint32_t ev = 0;
    for (size_t i = 0; i < n; i++)
      if (want[i].first == it->first) ev = want[i].second;
    if (ev == it->second) {
      ++it;
      continue;
    }
    if (ev == 0) {
      ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->first, nullptr);
      it = watched_.erase(it);
      continue;
    }
    epoll_event e{};
    e.events = ev;
    e.data.u64 = tag(kEvFd, static_cast<uint32_t>(it->first));
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, it->first, &e);
    it->second = ev;
    ++it;
  }
  for (size_t i = 0; i < n; i++) {
    bool known = false;
    for (auto& w : watched_) known |= w.first == want[i].first;
    if (known) continue;
    epoll_event e{};
    e.events = want[i].second;
    e.data.u64 = tag(kEvFd, static_cast<uint32_t>(want[i].first));
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, want[i].first, &e) == 0) watched_.push_back(want[i]);
  }
}

void Machine::dispatch_fd(int fd, uint32_t events) {
  for (const ConsoleSlot& c : consoles_) {
    c.transport->locked([&](VirtioDevice&) {
      // HUP/ERR count as readiness: the read or write then reports what happened.
      if (c.console->input_fd() == fd && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) c.console->on_input_ready();
      if (c.console->output_fd() == fd && (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))) c.console->on_output_ready();
    });
  }
}

Result<RunOutcome> Machine::run() {
  while (!step(-1)) {
  }
  return finish();
}

bool Machine::step(int timeout_ms) {
  if (vcpu_ended_ || stop_outcome_) return true;
  {
    update_fd_interest();
    epoll_event events[16];
    const int n = ::epoll_wait(epoll_.get(), events, 16, timeout_ms);
    if (n < 0) {
      if (errno == EINTR) return false;
      stop_outcome_ = RunOutcome{125, errno_error("epoll_wait").message};
      return true;
    }
    for (int i = 0; i < n; i++) {
      const uint64_t t = events[i].data.u64;
      const uint64_t v = t & ((uint64_t{1} << 56) - 1);
      switch (static_cast<EventKind>(t >> 56)) {
        case kEvVcpu: {
          drain_eventfd(vcpu_done_.get());
          const int st = vcpu_state_.load();
          if (st == kVcpuEnded || st == kVcpuIdle) vcpu_ended_ = true;
          break;
        }
        case kEvNotify: {
          drain_eventfd(notify_fds_[v].get());
          const auto [device, queue] = notify_queue_[v];
          transports_[device]->notify(queue);
          break;
        }
        case kEvDeviceWork:
          drain_eventfd(device_work_fd_.get());
          for (auto& t : transports_) t->run_device_work();
          break;
        case kEvFd:
          dispatch_fd(static_cast<int>(v), events[i].events);
          break;
        case kEvVsock:
          vsock_transport_->locked([&](VirtioDevice&) { vsock_->on_fd_event(v, events[i].events); });
          break;
        case kEvTimer:
          drain_eventfd(timer_fd_.get());
          stop_outcome_ = RunOutcome{124, "guest timed out after " + std::to_string(config_.timeout_ms) + " ms"};
          break;
        case kEvSignal: {
          signalfd_siginfo si{};
          if (::read(signal_fd_.get(), &si, sizeof si) == sizeof si) {
            log_.debug("got %s: stopping the VM", signal_name(si.ssi_signo));
            stop_outcome_ = RunOutcome{abi::exit_status_for_signal(si.ssi_signo), {}};
          }
          break;
        }
        default:
          break;
      }
    }
    for (const ConsoleSlot& c : consoles_)
      if (c.transport->locked([&](VirtioDevice&) { return c.console->broken_pipe(); }) && !stop_outcome_) {
        log_.debug("output pipe closed: stopping the VM");
        stop_outcome_ = RunOutcome{abi::exit_status_for_signal(13), {}};  // as SIGPIPE would
      }
  }
  update_fd_interest();  // for a caller that polls event_fd() next
  return vcpu_ended_ || stop_outcome_;
}

RunOutcome Machine::end_run() {
  // A VM stopped from outside (timeout, signal, broken pipe) ends for good;
  // one whose program ended (or that reached the ready point) keeps its
  // vCPU thread, idle, for a reset or the snapshot.
  if (!vcpu_ended_ || stop_outcome_) stop_vcpu();

  RunOutcome out;
  const std::optional<ControlOutcome> outcome = control_->outcome();
  if (stop_outcome_ && !vcpu_ended_) {
    out = *stop_outcome_;
  } else if (paused_at_ready_ && vcpu_result_.kind != ExitDecision::kFatal) {
    auto r = write_snapshot();
    out = r ? RunOutcome{0, {}} : RunOutcome{125, r.message()};
  } else if (vcpu_result_.kind == ExitDecision::kGuestDone) {
    // The guest does not wait for its output to be written: flush every
    // transmit chain it queued, then report its status.
    for (const ConsoleSlot& c : consoles_) c.transport->locked([&](VirtioDevice&) { c.console->drain_output(); });
    const ControlOutcome o = *outcome;
    out.status = exit_status_for(o);
    if (o.kind == ControlOutcome::kFault) log_.debug("%s", vcpu_message_.c_str());
    else if (o.kind == ControlOutcome::kSignal) log_.debug("program killed by %s", signal_name(o.value));
    else log_.debug("program exited with status %u", o.value);
  } else if (vcpu_result_.kind == ExitDecision::kFatal) {
    out = RunOutcome{125, vcpu_message_};
  } else if (stop_outcome_) {
    out = *stop_outcome_;
  } else if (writer_ && !paused_at_ready_) {
    out = RunOutcome{125, std::string(kNoSnapshotPrefix) + "the VM ended before the program was ready"};
  } else {
    out = RunOutcome{125, "vCPU stopped without a result"};
  }
  if (writer_ && !paused_at_ready_ && vcpu_result_.kind == ExitDecision::kGuestDone)
    out = RunOutcome{125, std::string(kNoSnapshotPrefix) + "the program ended (status " + std::to_string(out.status) +
                              ") before it first waited for input"};
  // Host vsock clients get what the guest sent and, on a stdio connection
  // without one, the exit frame the guest could not send (a fault, a kill).
  if (vsock_ && !paused_at_ready_)
    vsock_transport_->locked([&](VirtioDevice&) { vsock_->finish(exit_payload_for(outcome), kVsockDrainMs); });
  return out;
}

RunOutcome Machine::finish() {
  RunOutcome out = end_run();
  close(out);
  return out;
}

void Machine::close(const RunOutcome& last) {
  stop_vcpu();
  if (config_.trace || config_.verbose) print_trace(last);
  if (config_.detach_teardown && !detach_teardown()) log_.debug("no teardown helper: tearing down in-process");
}

Result<void> Machine::write_snapshot() {
  EMBER_TRY(const std::vector<uint8_t> state, capture_state(config_.image_size, writer_->image_crc32c()));
  const uint64_t t0 = monotonic_ns();
  auto written = writer_->commit(state, memory_.ram(), memory_.ram_size());
  if (!written) return Error{"snapshot " + config_.snapshot_dir + ": " + written.message()};
  log_.debug("snapshot written to %s: %llu KiB of memory, %zu bytes of state, %.1f ms", config_.snapshot_dir.c_str(),
             static_cast<unsigned long long>(*written >> 10), state.size(), (monotonic_ns() - t0) / 1e6);
  return Ok();
}

Result<uint64_t> Machine::save_snapshot_files(const SnapshotFilePaths& paths) {
  if (!config_.allow_snapshots) return Error{"snapshots were not enabled for this VM"};
  if (vcpu_state_.load() != kVcpuParked) return Error{"the VM is not paused"};
  const uint8_t* image = restoring_ ? files_.image.bytes() : config_.image;
  const uint64_t image_size = restoring_ ? files_.image_size : config_.image_size;
  if (!image || !image_size) return Error{"the VM has no function image (boot-source initrd_path)"};
  const std::string source = restoring_ ? (config_.restore_image_path.empty() ? config_.restore_dir + "/" + kImageFile
                                                                               : config_.restore_image_path)
                                        : config_.image_path;
  EMBER_TRY(const std::vector<uint8_t> state, capture_state(image_size, crc32c(image, image_size)));
  const uint64_t t0 = monotonic_ns();
  EMBER_TRY(const uint64_t written,
            write_snapshot_files(paths, state, memory_.ram(), memory_.ram_size(), image, image_size, source));
  log_.debug("snapshot written to %s, %s, %s: %llu KiB of memory, %zu bytes of state, %.1f ms", paths.state.c_str(),
             paths.mem.c_str(), paths.image.c_str(), static_cast<unsigned long long>(written >> 10), state.size(),
             (monotonic_ns() - t0) / 1e6);
  return written;
}

Result<std::vector<uint8_t>> Machine::capture_state(uint64_t image_size, uint32_t image_crc) {
  // The vCPU is stopped past its ready write. First the devices: what the
  // guest queued is processed, so that the rings in memory and the device
  // state agree (and no output is written twice after a restore).
  for (uint32_t i = 0; i < notify_fds_.size(); i++) {
    uint64_t v;
    if (::read(notify_fds_[i].get(), &v, 8) == 8) transports_[notify_queue_[i].first]->notify(notify_queue_[i].second);
  }
  for (const ConsoleSlot& c : consoles_) c.transport->locked([&](VirtioDevice&) { c.console->drain_output(); });
  if (vsock_transport_->locked([&](VirtioDevice&) { return vsock_->connection_count(); }))
    return Error{"snapshot: vsock connections are open at the ready point (a snapshot holds none)"};
  // Then the vCPU, the irqchip and the clock (the drained devices may have
  // raised interrupts since the vCPU stopped).
  auto r = vcpu_command(kCmdSave, true);
  if (!r) return Error{"snapshot: " + r.message()};

  snap_.machine.mem_size = memory_.ram_size();
  snap_.machine.image_size = image_size;
  snap_.machine.image_crc32c = image_crc;
  snap_.machine.guest_cid = guest_cid();
  if (!restoring_) {  // a restored VM keeps what its snapshot said
    snap_.machine.boot_flags = boot_info_.flags;
    snap_.machine.tsc_khz = boot_info_.tsc_khz;
  }
  snap_.control_ready = control_->ready();
  snap_.devices.clear();
  for (uint32_t i = 0; i < transports_.size(); i++) {
    DeviceSnapshot d;
    d.device_id = transports_[i]->device().device_id();
    d.role = i == 0 ? abi::kRoleStdio : i == 1 ? abi::kRoleStderr : abi::kRoleControl;
    d.transport = transports_[i]->save();
    if (i < consoles_.size()) d.console = consoles_[i].transport->locked([&](VirtioDevice&) { return consoles_[i].console->save(); });
    else d.vsock = vsock_transport_->locked([&](VirtioDevice&) { return vsock_->save(); });
    snap_.devices.push_back(std::move(d));
  }
  return serialize_vmstate(snap_);
}

Result<void> Machine::reset() {
  if (!restoring_) return Error{"reset: only a restored VM can be reset"};
  if (vcpu_state_.load() != kVcpuIdle) return Error{"reset: the VM has not stopped"};
  start_ns_ = monotonic_ns();
  // The vCPU thread loads its own state meanwhile, then waits for this
  // thread's part before it rewrites the boot info and runs on.
  main_ready_.store(0);
  EMBER_TRY_VOID(vcpu_command(kCmdReload, false));
  vcpu_ended_ = false;
  stop_outcome_.reset();
  auto r = [&]() -> Result<void> {
    // Memory: drop every page the guest wrote; the next access reads vm.mem
    // again (the page cache). KVM's MMU notifier unmaps them from the guest.
    if (::madvise(memory_.ram(), memory_.ram_size(), MADV_DONTNEED) < 0) return errno_error("madvise(MADV_DONTNEED)");
    EMBER_TRY_VOID(restore_devices());
    if (!config_.vsock_uds.empty()) vsock_transport_->locked([&](VirtioDevice&) { vsock_->preconnect(abi::kStdioPort); });
    return Ok();
  }();
  main_ready_.store(r ? 1 : 2);
  futex_wake(main_ready_);
  if (!r) return r;
  prepare_run();
  last_reset_us_ = (monotonic_ns() - start_ns_) / 1000;
  return Ok();
}

void Machine::prepare_run() {
  if (timer_fd_.valid()) {
    itimerspec its{};
    its.it_value.tv_sec = static_cast<time_t>(config_.timeout_ms / 1000);
    its.it_value.tv_nsec = static_cast<long>((config_.timeout_ms % 1000) * 1000000);
    ::timerfd_settime(timer_fd_.get(), 0, &its, nullptr);
  }
}

uint64_t Machine::resumed_ns() {
  for (;;) {
    const uint32_t seq = resumed_seq_.load();
    const uint64_t v = resumed_ns_.load();
    if (v >= start_ns_) return v;
    if (vcpu_state_.load() == kVcpuEnded) return 0;
    struct timespec ts{0, 1000000};
    ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(&resumed_seq_), FUTEX_WAIT_PRIVATE, seq, &ts, nullptr, 0);
  }
}

void Machine::print_trace(const RunOutcome& out) {
  // One line of key=value pairs (bench/ parses it): µs since t0 (process
  // start as main() saw it) for each set-up step, the vCPU thread's
  // milestones, and the exit counts.
  const uint64_t t0 = config_.t0_ns ? config_.t0_ns : (marks_.empty() ? 0 : marks_[0].ns);
  auto us = [t0](uint64_t t) { return t >= t0 ? static_cast<double>(t - t0) / 1000.0 : 0.0; };
  std::string line = "ember-trace:";
  char buf[64];
  auto add = [&](const char* key, double v) {
    std::snprintf(buf, sizeof buf, " %s=%.0f", key, v);
    line += buf;
  };
  for (const Mark& m : marks_) add((std::string(m.what) + "_us").c_str(), us(m.ns));
  add("cpuid_us", us(cpuid_ns_));
  add("vcpu_ready_us", us(vcpu_ready_ns_));
  add("first_run_us", us(first_run_ns_));
  add("exit_us", us(vcpu_end_ns_));
  add("end_us", us(monotonic_ns()));
  uint64_t total = 0;
  for (uint64_t c : counts_.by_reason) total += c;
  add("exits", static_cast<double>(total));
  for (size_t r = 0; r < counts_.by_reason.size(); r++) {
    if (!counts_.by_reason[r]) continue;
    std::string key = "exits_" + std::string(exit_reason_name(static_cast<uint32_t>(r)));
    for (char& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    add(key.c_str(), static_cast<double>(counts_.by_reason[r]));
  }
  if (restores_ > 1) add("last_reset_us", static_cast<double>(last_reset_us_));
  add("main_mono_us", static_cast<double>(t0 / 1000));
  add("kick_eintr", static_cast<double>(counts_.eintr));
  add("bus_misses", static_cast<double>(bus_.misses()));
  add("log_lines", static_cast<double>(control_ ? control_->log_lines() : 0));
  add("status", out.status);
  line += "\n";
  ssize_t r = ::write(2, line.data(), line.size());
  (void)r;
}

Result<RunOutcome> run_machine(const MachineConfig& config) { return restore_and_run(config, 1); }

Result<RunOutcome> restore_and_run(const MachineConfig& config, uint64_t repeat) {
  Machine m(config);
  EMBER_TRY_VOID(m.setup());
  if (config.restore_dir.empty()) return m.run();
  release_dead_stack();  // what the restore's set-up used below this frame: the loop stays shallower
  RunOutcome out;
  for (uint64_t i = 0; i < repeat; i++) {
    if (i > 0) {
      auto r = m.reset();
      if (!r) {
        out = RunOutcome{125, r.message()};
        break;
      }
    }
    while (!m.step(-1)) {
    }
    out = m.end_run();
    // Only a run that ended with the program's own status can be followed
    // by another: a timeout, a signal to ember-vmm or a VMM error ends it all.
    if (!out.error.empty() || m.stopped_from_outside()) break;
  }
  m.close(out);
  return out;
}

SnapshotVm::SnapshotVm(const MachineConfig& config) : config_(config) {}
SnapshotVm::~SnapshotVm() {
  if (machine_) machine_->close(RunOutcome{});
}

Result<std::unique_ptr<SnapshotVm>> SnapshotVm::restore(const MachineConfig& config) {
  if (config.restore_dir.empty()) return Error{"SnapshotVm::restore: no snapshot directory"};
  std::unique_ptr<SnapshotVm> vm(new SnapshotVm(config));
  vm->machine_ = std::make_unique<Machine>(vm->config_);
  EMBER_TRY_VOID(vm->machine_->setup());
  return vm;
}

RunOutcome SnapshotVm::run() {
  while (!machine_->step(-1)) {
  }
  return machine_->end_run();
}

Result<void> SnapshotVm::reset() { return machine_->reset(); }
uint64_t SnapshotVm::resumed_ns() { return machine_->resumed_ns(); }
uint64_t SnapshotVm::started_ns() const { return machine_->started_ns(); }

MachineRunner::MachineRunner(const MachineConfig& config) : config_(config) {}
MachineRunner::~MachineRunner() = default;

Result<std::unique_ptr<MachineRunner>> MachineRunner::boot(const MachineConfig& config) {
  std::unique_ptr<MachineRunner> r(new MachineRunner(config));
  r->machine_ = std::make_unique<Machine>(r->config_);
  EMBER_TRY_VOID(r->machine_->setup());
  r->machine_->watch_fds();
  return r;
}

int MachineRunner::event_fd() const { return machine_->event_fd(); }
bool MachineRunner::step() { return machine_->step(0); }
RunOutcome MachineRunner::finish() { return machine_->finish(); }
void MachineRunner::pause() { machine_->pause(); }
void MachineRunner::resume() { machine_->resume(); }
bool MachineRunner::paused() const { return machine_->paused(); }
Result<uint64_t> MachineRunner::save_snapshot(const SnapshotFilePaths& paths) {
  return machine_->save_snapshot_files(paths);
}
uint64_t MachineRunner::mem_size() const { return machine_->mem_size(); }
bool MachineRunner::guest_ready() const { return machine_->guest_ready(); }
uint64_t MachineRunner::guest_cid() const { return machine_->guest_cid(); }

}  // namespace ember
