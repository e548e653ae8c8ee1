// Machine, the builder: a new VM (boot) or the frame for a restored one,
// its memory, kernel and image, the device table, the event loop's fds.
#include "vmm/machine_impl.h"

namespace ember {

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
  EMBER_TRY(memory_, GuestMemory::create(config_.mem_size, config_.huge_pages));
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
               BootDevice{abi::kVirtioIdVsock, abi::kRoleControl, abi::kVsockQueueCount}};
  if (::getrandom(p.random_seed, sizeof p.random_seed, 0) != static_cast<ssize_t>(sizeof p.random_seed))
    return errno_error("getrandom");
  EMBER_TRY(boot_info_, make_boot_info(p));
  boot_info_.guest_cid = config_.guest_cid;
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
  std::vector<KvmVm::MsiRoute> routes;
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

    routes.push_back(KvmVm::MsiRoute{kGsiBase + i, abi::kLapicGpa, abi::kDeviceVectorBase + i});
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

}  // namespace ember
