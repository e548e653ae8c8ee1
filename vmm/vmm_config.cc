#include "vmm/vmm_config.h"

#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <climits>

namespace ember {

const char* instance_state_name(InstanceState s) {
  switch (s) {
    case InstanceState::kNotStarted:
      return "Not started";
    case InstanceState::kRunning:
      return "Running";
    case InstanceState::kPaused:
      return "Paused";
    case InstanceState::kExited:
      return "Exited";
  }
  return "Unknown";
}

namespace {

Result<void> check_readable_file(const std::string& field, const std::string& path) {
  EMBER_TRY_VOID(VmmController::validate_path(field, path));
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return errno_error(field + " " + path);
  if (!S_ISREG(st.st_mode)) return Error{field + " " + path + ": not a regular file"};
  if (::access(path.c_str(), R_OK) != 0) return errno_error(field + " " + path);
  return Ok();
}

}  // namespace

Result<void> VmmController::validate_path(const std::string& field, const std::string& path) {
  if (path.empty()) return Error{field + " must not be empty"};
  if (path.size() >= PATH_MAX) return Error{field + " is too long (" + std::to_string(path.size()) + " bytes)"};
  if (path.find('\0') != std::string::npos) return Error{field + " contains a NUL byte"};
  return Ok();
}

Result<void> VmmController::validate_machine(const MachineSpec& spec) {
  if (spec.vcpu_count != 1)
    return Error{"vcpu_count " + std::to_string(spec.vcpu_count) +
                 " is not supported: an Ember microVM has exactly 1 vCPU"};
  if (spec.mem_size_mib < kApiMinMemMib || spec.mem_size_mib > kApiMaxMemMib || spec.mem_size_mib % 2)
    return Error{"mem_size_mib " + std::to_string(spec.mem_size_mib) + " is invalid: it must be an even number from " +
                 std::to_string(kApiMinMemMib) + " to " + std::to_string(kApiMaxMemMib)};
  if (spec.smt) return Error{"smt is not supported: an Ember microVM has exactly 1 vCPU"};
  return Ok();
}

Result<void> VmmController::validate_vsock(const VsockSpec& spec) {
  if (spec.guest_cid < 3 || spec.guest_cid > 0xfffffffeull)
    return Error{"guest_cid " + std::to_string(spec.guest_cid) + " is invalid: it must be from 3 to 4294967294"};
  EMBER_TRY_VOID(validate_path("uds_path", spec.uds_path));
  if (spec.uds_path.size() >= sizeof(sockaddr_un::sun_path))
    return Error{"uds_path is too long for a Unix socket (" + std::to_string(spec.uds_path.size()) + " bytes, max " +
                 std::to_string(sizeof(sockaddr_un::sun_path) - 1) + ")"};
  return Ok();
}

Result<void> VmmController::require_pre_boot(const char* resource) const {
  if (state_ == InstanceState::kNotStarted) return Ok();
  return Error{std::string("The ") + resource + " can only be configured before the microVM starts (it is " +
               instance_state_name(state_) + ")"};
}

Result<void> VmmController::require_started(const char* what) const {
  switch (state_) {
    case InstanceState::kNotStarted:
      return Error{std::string(what) + " needs a running microVM: it has not been started (PUT /actions " +
                   "{\"action_type\": \"InstanceStart\"} or PUT /snapshot/load first)"};
    case InstanceState::kExited:
      return Error{std::string(what) + " is not possible: the microVM has exited (status " +
                   std::to_string(exit_status_) + (exit_message_.empty() ? "" : ": " + exit_message_) + ")"};
    default:
      return Ok();
  }
}

Result<void> VmmController::set_boot_source(BootSourceSpec spec) {
  EMBER_TRY_VOID(require_pre_boot("boot source"));
  EMBER_TRY_VOID(check_readable_file("kernel_image_path", spec.kernel_image_path));
  if (spec.initrd_path) EMBER_TRY_VOID(check_readable_file("initrd_path", *spec.initrd_path));
  if (spec.boot_args) {
    if (spec.boot_args->size() >= 1024)
      return Error{"boot_args is too long (" + std::to_string(spec.boot_args->size()) + " bytes, max 1023)"};
    if (spec.boot_args->find('\0') != std::string::npos) return Error{"boot_args contains a NUL byte"};
  }
  config_.boot_source = std::move(spec);
  boot_resources_set_ = true;
  return Ok();
}

Result<void> VmmController::put_machine_config(const MachineSpec& spec) {
  EMBER_TRY_VOID(require_pre_boot("machine configuration"));
  EMBER_TRY_VOID(validate_machine(spec));
  config_.machine = spec;
  boot_resources_set_ = true;
  return Ok();
}

Result<void> VmmController::patch_machine_config(std::optional<uint32_t> vcpu_count,
                                                 std::optional<uint64_t> mem_size_mib, std::optional<bool> smt,
                                                 std::optional<bool> track_dirty_pages) {
  EMBER_TRY_VOID(require_pre_boot("machine configuration"));
  MachineSpec m = config_.machine;
  if (vcpu_count) m.vcpu_count = *vcpu_count;
  if (mem_size_mib) m.mem_size_mib = *mem_size_mib;
  if (smt) m.smt = *smt;
  if (track_dirty_pages) m.track_dirty_pages = *track_dirty_pages;
  EMBER_TRY_VOID(validate_machine(m));
  config_.machine = m;
  boot_resources_set_ = true;
  return Ok();
}

Result<void> VmmController::set_vsock(VsockSpec spec) {
  EMBER_TRY_VOID(require_pre_boot("vsock device"));
  EMBER_TRY_VOID(validate_vsock(spec));
  config_.vsock = std::move(spec);
  boot_resources_set_ = true;
  return Ok();
}

Result<void> VmmController::set_metrics(MetricsSpec spec) {
  if (config_.metrics) return Error{"Reinitialization of metrics is not allowed: metrics_path is already " +
                                    config_.metrics->metrics_path};
  EMBER_TRY_VOID(validate_path("metrics_path", spec.metrics_path));
  config_.metrics = std::move(spec);
  return Ok();
}

Result<void> VmmController::instance_start() {
  switch (state_) {
    case InstanceState::kRunning:
    case InstanceState::kPaused:
      return Error{"InstanceStart: the microVM is already running"};
    case InstanceState::kExited:
      return Error{"InstanceStart: the microVM has exited (status " + std::to_string(exit_status_) +
                   "); a VMM process boots one microVM: start a new ember-vmm"};
    case InstanceState::kNotStarted:
      break;
  }
  if (!config_.boot_source)
    return Error{"InstanceStart: no boot source: PUT /boot-source (kernel_image_path, initrd_path) first"};
  EMBER_TRY_VOID(validate_machine(config_.machine));
  auto r = backend_->start(config_);
  if (!r) return Error{"InstanceStart failed: " + r.message()};
  state_ = InstanceState::kRunning;
  return Ok();
}

Result<void> VmmController::pause() {
  EMBER_TRY_VOID(require_started("Pausing"));
  if (state_ == InstanceState::kPaused) return Ok();
  auto r = backend_->pause();
  if (!r) return Error{"pausing the microVM failed: " + r.message()};
  state_ = InstanceState::kPaused;
  return Ok();
}

Result<void> VmmController::resume() {
  EMBER_TRY_VOID(require_started("Resuming"));
  if (state_ == InstanceState::kRunning) return Ok();
  auto r = backend_->resume();
  if (!r) return Error{"resuming the microVM failed: " + r.message()};
  state_ = InstanceState::kRunning;
  return Ok();
}

Result<void> VmmController::create_snapshot(const SnapshotCreateSpec& spec) {
  EMBER_TRY_VOID(require_started("Creating a snapshot"));
  if (state_ != InstanceState::kPaused)
    return Error{"Creating a snapshot needs a paused microVM: PATCH /vm {\"state\": \"Paused\"} first"};
  EMBER_TRY_VOID(validate_path("snapshot_path", spec.snapshot_path));
  EMBER_TRY_VOID(validate_path("mem_file_path", spec.mem_file_path));
  if (spec.type == SnapshotType::kDiff && !config_.machine.track_dirty_pages)
    return Error{"Diff snapshots need dirty page tracking: set machine-config track_dirty_pages to true before "
                 "InstanceStart (or snapshot/load with track_dirty_pages)"};
  auto r = backend_->create_snapshot(spec);
  if (!r) return Error{"creating the snapshot failed: " + r.message()};
  return Ok();
}

Result<void> VmmController::load_snapshot(const SnapshotLoadSpec& spec) {
  if (state_ != InstanceState::kNotStarted)
    return Error{std::string("Loading a snapshot is only possible before the microVM starts (it is ") +
                 instance_state_name(state_) + "): start a new ember-vmm"};
  if (boot_resources_set_)
    return Error{"Loading a snapshot is not allowed after configuring boot-specific resources (boot-source, "
                 "machine-config, vsock): the snapshot carries its own; start a new ember-vmm"};
  EMBER_TRY_VOID(validate_path("snapshot_path", spec.snapshot_path));
  EMBER_TRY_VOID(validate_path("mem_backend.backend_path", spec.mem_file_path));
  if (spec.vsock_uds_override) {
    VsockSpec v{3, *spec.vsock_uds_override};
    auto ok = validate_vsock(v);
    if (!ok) return Error{"vsock_override: " + ok.message()};
  }
  VmmConfig restored = config_;
  auto r = backend_->load_snapshot(spec, &restored);
  if (!r) return Error{"loading the snapshot failed: " + r.message()};
  config_.machine = restored.machine;
  config_.machine.track_dirty_pages = spec.track_dirty_pages;
  config_.vsock = restored.vsock;
  config_.restored = true;
  state_ = InstanceState::kPaused;
  if (spec.resume_vm) {
    auto rr = backend_->resume();
    if (!rr) return Error{"the snapshot was loaded but resuming the microVM failed: " + rr.message()};
    state_ = InstanceState::kRunning;
  }
  return Ok();
}

void VmmController::on_vm_exit(int status, std::string message) {
  state_ = InstanceState::kExited;
  exit_status_ = status;
  exit_message_ = std::move(message);
}

}  // namespace ember
