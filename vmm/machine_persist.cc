// Machine, persistence: writing a snapshot (vmstate, memory), restoring one
// and resetting a restored VM in place.
#include "vmm/machine_impl.h"

namespace ember {

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

}  // namespace ember
