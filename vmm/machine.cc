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
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cctype>
#include <cinttypes>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "api/boot_info.h"
#include "api/guest_layout.h"
#include "jailer/seccomp.h"
#include "vmm/boot.h"
#include "vmm/bus.h"
#include "vmm/console.h"
#include "vmm/control_device.h"
#include "vmm/elf_loader.h"
#include "vmm/guest_memory.h"
#include "vmm/kvm.h"
#include "vmm/log.h"
#include "vmm/teardown.h"
#include "vmm/vcpu_exit.h"
#include "vmm/virtio_mmio.h"

namespace ember {

uint64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

namespace {

constexpr int kKickSignal = SIGUSR1;
constexpr uint32_t kGsiBase = 24;  // above the IOAPIC pins, so no default route is in the way
constexpr uint32_t kQueues = 2;    // per console

uint64_t realtime_ns() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

void no_op_handler(int) {}

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
enum EventKind : uint64_t { kEvSignal = 1, kEvTimer, kEvVcpu, kEvNotify, kEvFd };
constexpr uint64_t tag(EventKind k, uint64_t v = 0) { return (uint64_t{k} << 56) | v; }

struct ConsoleSlot {
  VirtioMmioTransport* transport;
  ConsoleDevice* console;
};

}  // namespace

class Machine {
 public:
  explicit Machine(const MachineConfig& config) : config_(config), log_(config.verbose) {}
  ~Machine() {
    stop_vcpu();
    if (mask_saved_) ::pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
  }

  Result<void> setup();
  Result<RunOutcome> run();
  // The event loop one round at a time (MachineRunner): waits up to
  // timeout_ms (-1: forever) and handles what is ready; true once the VM ended.
  bool step(int timeout_ms);
  RunOutcome finish();  // stops the vCPU, drains the guest's output, the outcome
  int event_fd() const { return epoll_.get(); }
  // Parks the vCPU thread outside KVM_RUN (returns once it is parked or has
  // ended); resume() lets it run on.
  void pause();
  void resume();
  bool paused() const { return pause_.load(); }

 private:
  struct Mark {
    const char* what;
    uint64_t ns;
  };
  // Set-up phases the vCPU thread waits for (phase_).
  enum Phase : int { kPhaseInit = 0, kPhaseVmReady = 1, kPhaseGo = 2, kPhaseAbort = 3 };

  void mark(const char* what) { marks_.push_back(Mark{what, monotonic_ns()}); }
  Result<void> setup_signals();
  Result<void> setup_devices();
  Result<void> setup_event_loop();
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
  std::vector<Fd> irqfds_;
  std::vector<Fd> notify_fds_;  // index: device * kQueues + queue
  abi::BootInfo boot_info_{};   // the vCPU thread adds the clock sample and writes it

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
  enum VcpuState : int { kVcpuRunning = 0, kVcpuParked = 1, kVcpuEnded = 2 };
  std::atomic<bool> pause_{false};
  std::atomic<int> vcpu_state_{kVcpuRunning};
  uint64_t cpuid_ns_ = 0, vcpu_ready_ns_ = 0, first_run_ns_ = 0, vcpu_end_ns_ = 0;
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
  mark("setup_start");
  EMBER_TRY(kvm_, Kvm::open());
  mark("kvm_open");
  EMBER_TRY_VOID(setup_signals());
  EMBER_TRY(vcpu_done_, make_eventfd());
  mark("signals");
  vcpu_thread_ = std::thread([this] { vcpu_main(); });
  mark("spawn");
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
  mark("devices");

  // Boot info; the vCPU thread adds the clock sample, taken as close to the
  // first guest instruction as it can be.
  BootParams p;
  p.mem_size = memory_.ram_size();
  p.image_gpa = image_mapped ? abi::kImageGpa : 0;
  p.image_size = config_.image_size;
  p.flags = abi::kBootPreconfigured | abi::kBootHasControl;
  p.cmdline = config_.cmdline;
  p.devices = {BootDevice{abi::kVirtioIdConsole, abi::kRoleStdio, kQueues},
               BootDevice{abi::kVirtioIdConsole, abi::kRoleStderr, kQueues}};
  if (::getrandom(p.random_seed, sizeof p.random_seed, 0) != static_cast<ssize_t>(sizeof p.random_seed))
    return errno_error("getrandom");
  EMBER_TRY(boot_info_, make_boot_info(p));

  EMBER_TRY_VOID(setup_event_loop());
  if (config_.seccomp) {  // before the guest's first instruction (kPhaseGo)
    EMBER_TRY_VOID(seccomp::install(seccomp::Thread::kMain));
    if (config_.after_seccomp) config_.after_seccomp("main");
  }
  set_phase(kPhaseGo);
  mark("event_loop");
  return Ok();
}

Result<void> Machine::setup_devices() {
  control_ = std::make_unique<ControlDevice>(memory_, &log_);
  EMBER_TRY_VOID(bus_.add(abi::kControlGpa, abi::kPageSize, control_.get(), "control page"));

  struct Spec {
    int in_fd, out_fd;
  };
  const Spec specs[] = {{config_.stdin_fd, config_.stdout_fd}, {-1, config_.stderr_fd}};
  std::vector<Vm::MsiRoute> routes;
  for (uint32_t i = 0; i < std::size(specs); i++) {
    EMBER_TRY(Fd irq, make_eventfd());
    const int irq_fd = irq.get();
    auto console = std::make_unique<ConsoleDevice>(specs[i].in_fd, specs[i].out_fd, &log_);
    ConsoleDevice* raw = console.get();
    if (specs[i].in_fd >= 0) {
      // epoll refuses regular files and /dev/null: read those eagerly.
      epoll_event ev{};
      ev.events = EPOLLIN;
      Fd probe(::epoll_create1(EPOLL_CLOEXEC));
      const bool pollable = probe.valid() && ::epoll_ctl(probe.get(), EPOLL_CTL_ADD, specs[i].in_fd, &ev) == 0;
      raw->set_input_pollable(pollable);
    }
    auto transport = std::make_unique<VirtioMmioTransport>(
        std::move(console), memory_, [irq_fd] { signal_eventfd(irq_fd); }, &log_);
    const uint64_t base = abi::kVirtioMmioBase + i * abi::kVirtioMmioStride;
    EMBER_TRY_VOID(bus_.add(base, abi::kVirtioMmioStride, transport.get(), "virtio-console " + std::to_string(i)));

    for (uint32_t q = 0; q < kQueues; q++) {
      EMBER_TRY(Fd nfd, make_eventfd());
      EMBER_TRY_VOID(vm_.add_ioeventfd(nfd.get(), base + kMmioQueueNotify, 4, q));
      notify_fds_.push_back(std::move(nfd));
    }
    // A QueueNotify that still reaches us (datamatch miss, or no ioeventfd)
    // is handed to the event loop like an ioeventfd would be.
    std::vector<int> fds;
    for (uint32_t q = 0; q < kQueues; q++) fds.push_back(notify_fds_[i * kQueues + q].get());
    transport->set_notify_hook([fds](uint32_t q) {
      if (q < fds.size()) signal_eventfd(fds[q]);
    });

    routes.push_back(Vm::MsiRoute{kGsiBase + i, abi::kLapicGpa, abi::kDeviceVectorBase + i});
    irqfds_.push_back(std::move(irq));
    consoles_.push_back(ConsoleSlot{transport.get(), raw});
    transports_.push_back(std::move(transport));
  }
  EMBER_TRY_VOID(vm_.set_msi_routes(routes));
  for (uint32_t i = 0; i < irqfds_.size(); i++) EMBER_TRY_VOID(vm_.add_irqfd(irqfds_[i].get(), kGsiBase + i));

  for (uint32_t i = 0; i < transports_.size(); i++) {
    EMBER_TRY_VOID(transports_[i]->preconfigure(
        [i](uint32_t q) { return abi::queue_gpa(i, q); }, abi::kQueueSize, abi::kQueueAvailOffset,
        abi::kQueueUsedOffset));
  }
  return Ok();
}

Result<void> Machine::setup_event_loop() {
  epoll_ = Fd(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_.valid()) return errno_error("epoll_create1");
  auto add = [this](int fd, uint64_t t) -> Result<void> {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = t;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) return errno_error("epoll_ctl");
    return Ok();
  };

  if (signal_fd_.valid()) EMBER_TRY_VOID(add(signal_fd_.get(), tag(kEvSignal)));
  EMBER_TRY_VOID(add(vcpu_done_.get(), tag(kEvVcpu)));
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

Result<void> Machine::vcpu_setup() {
  EMBER_TRY_VOID(kvm_.load_supported_cpuid());
  cpuid_ns_ = monotonic_ns();
  if (!wait_phase(kPhaseVmReady)) return Error{"aborted"};
  EMBER_TRY(vcpu_, vm_.create_vcpu(0));
  run_ptr_.store(vcpu_.run(), std::memory_order_seq_cst);
  EMBER_TRY_VOID(setup_boot_vcpu(vcpu_, kvm_, kernel_.note));
  vcpu_ready_ns_ = monotonic_ns();
  if (!wait_phase(kPhaseGo)) return Error{"aborted"};
  // The clock sample: guest TSC and host realtime, read back to back.
  auto khz = vcpu_.tsc_khz();
  boot_info_.tsc_khz = khz ? *khz : 0;
  EMBER_TRY(boot_info_.boot_tsc, vcpu_.get_msr(0x10));  // IA32_TSC, as the guest reads it
  boot_info_.realtime_ns = realtime_ns();
  EMBER_TRY_VOID(memory_.write_obj(abi::kBootInfoGpa, boot_info_));
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
    vcpu_loop();
  }
  vcpu_end_ns_ = monotonic_ns();
  vcpu_state_.store(kVcpuEnded);
  vcpu_state_.notify_all();
  signal_eventfd(vcpu_done_.get());
}

void Machine::vcpu_park() {
  vcpu_state_.store(kVcpuParked);
  vcpu_state_.notify_all();
  while (pause_.load() && !stop_.load()) pause_.wait(true);
  vcpu_state_.store(kVcpuRunning);
}

void Machine::pause() {
  if (pause_.exchange(true)) return;
  if (vcpu_state_.load() == kVcpuEnded || !vcpu_thread_.joinable()) return;
  if (kvm_run* run = run_ptr_.load(std::memory_order_seq_cst)) run->immediate_exit = 1;
  ::pthread_kill(vcpu_thread_.native_handle(), kKickSignal);
  for (int s; (s = vcpu_state_.load()) == kVcpuRunning;) vcpu_state_.wait(s);
}

void Machine::resume() {
  pause_.store(false);
  pause_.notify_all();
}

void Machine::vcpu_loop() {
  sigset_t kick;
  sigemptyset(&kick);
  sigaddset(&kick, kKickSignal);
  ::pthread_sigmask(SIG_UNBLOCK, &kick, nullptr);

  kvm_run* run = vcpu_.run();
  first_run_ns_ = monotonic_ns();
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
    if (d.kind == ExitDecision::kContinue) continue;
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
        case kEvVcpu:
          drain_eventfd(vcpu_done_.get());
          vcpu_ended_ = true;
          break;
        case kEvNotify: {
          drain_eventfd(notify_fds_[v].get());
          consoles_[v / kQueues].transport->notify(static_cast<uint32_t>(v % kQueues));
          break;
        }
        case kEvFd:
          dispatch_fd(static_cast<int>(v), events[i].events);
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

RunOutcome Machine::finish() {
  stop_vcpu();

  RunOutcome out;
  if (stop_outcome_ && !vcpu_ended_) {
    out = *stop_outcome_;
  } else if (vcpu_result_.kind == ExitDecision::kGuestDone) {
    // The guest does not wait for its output to be written: flush every
    // transmit chain it queued, then report its status.
    for (const ConsoleSlot& c : consoles_) c.transport->locked([&](VirtioDevice&) { c.console->drain_output(); });
    const ControlOutcome o = *control_->outcome();
    out.status = exit_status_for(o);
    if (o.kind == ControlOutcome::kFault) log_.debug("%s", vcpu_message_.c_str());
    else if (o.kind == ControlOutcome::kSignal) log_.debug("program killed by %s", signal_name(o.value));
    else log_.debug("program exited with status %u", o.value);
  } else if (vcpu_result_.kind == ExitDecision::kFatal) {
    out = RunOutcome{125, vcpu_message_};
  } else if (stop_outcome_) {
    out = *stop_outcome_;
  } else {
    out = RunOutcome{125, "vCPU stopped without a result"};
  }
  if (config_.trace || config_.verbose) print_trace(out);
  if (config_.detach_teardown && !detach_teardown()) log_.debug("no teardown helper: tearing down in-process");
  return out;
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
  add("kick_eintr", static_cast<double>(counts_.eintr));
  add("bus_misses", static_cast<double>(bus_.misses()));
  add("log_lines", static_cast<double>(control_ ? control_->log_lines() : 0));
  add("status", out.status);
  line += "\n";
  ssize_t r = ::write(2, line.data(), line.size());
  (void)r;
}

Result<RunOutcome> run_machine(const MachineConfig& config) {
  Machine m(config);
  EMBER_TRY_VOID(m.setup());
  return m.run();
}

MachineRunner::MachineRunner(const MachineConfig& config) : config_(config) {}
MachineRunner::~MachineRunner() = default;

Result<std::unique_ptr<MachineRunner>> MachineRunner::boot(const MachineConfig& config) {
  std::unique_ptr<MachineRunner> r(new MachineRunner(config));
  r->machine_ = std::make_unique<Machine>(r->config_);
  EMBER_TRY_VOID(r->machine_->setup());
  return r;
}

int MachineRunner::event_fd() const { return machine_->event_fd(); }
bool MachineRunner::step() { return machine_->step(0); }
RunOutcome MachineRunner::finish() { return machine_->finish(); }
void MachineRunner::pause() { machine_->pause(); }
void MachineRunner::resume() { machine_->resume(); }
bool MachineRunner::paused() const { return machine_->paused(); }

}  // namespace ember
