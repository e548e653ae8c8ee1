// Machine, the event loop (signals, timers, queue notifications, device fds),
// the end of a run, and the facades of vmm/machine.h.
#include "vmm/machine_impl.h"

namespace ember {

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

RestoredMachine::RestoredMachine(const MachineConfig& config) : config_(config) {}

RestoredMachine::~RestoredMachine() {
  if (machine_) machine_->close(RunOutcome{});
}

Result<std::unique_ptr<RestoredMachine>> RestoredMachine::restore(const MachineConfig& config) {
  if (config.restore_dir.empty()) return Error{"RestoredMachine::restore: no snapshot directory"};
  std::unique_ptr<RestoredMachine> vm(new RestoredMachine(config));
  vm->machine_ = std::make_unique<Machine>(vm->config_);
  EMBER_TRY_VOID(vm->machine_->setup());
  return vm;
}

RunOutcome RestoredMachine::run() {
  while (!machine_->step(-1)) {
  }
  return machine_->end_run();
}

Result<void> RestoredMachine::reset() { return machine_->reset(); }

uint64_t RestoredMachine::resumed_ns() { return machine_->resumed_ns(); }

uint64_t RestoredMachine::started_ns() const { return machine_->started_ns(); }

SteppedMachine::SteppedMachine(const MachineConfig& config) : config_(config) {}

SteppedMachine::~SteppedMachine() = default;

Result<std::unique_ptr<SteppedMachine>> SteppedMachine::boot(const MachineConfig& config) {
  std::unique_ptr<SteppedMachine> r(new SteppedMachine(config));
  r->machine_ = std::make_unique<Machine>(r->config_);
  EMBER_TRY_VOID(r->machine_->setup());
  r->machine_->watch_fds();
  return r;
}

int SteppedMachine::event_fd() const { return machine_->event_fd(); }

bool SteppedMachine::step() { return machine_->step(0); }

RunOutcome SteppedMachine::finish() { return machine_->finish(); }

void SteppedMachine::pause() { machine_->pause(); }

void SteppedMachine::resume() { machine_->resume(); }

bool SteppedMachine::paused() const { return machine_->paused(); }

Result<uint64_t> SteppedMachine::save_snapshot(const SnapshotFilePaths& paths) {
  return machine_->save_snapshot_files(paths);
}

uint64_t SteppedMachine::mem_size() const { return machine_->mem_size(); }

bool SteppedMachine::guest_ready() const { return machine_->guest_ready(); }

uint64_t SteppedMachine::guest_cid() const { return machine_->guest_cid(); }

}  // namespace ember
