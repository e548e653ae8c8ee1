// The VMM's configuration as the API sees it (Firecracker's resources: boot
// source, machine config, vsock, metrics), and the state machine that says
// which request is allowed when: pre-boot resources only before the VM
// starts, pause/resume/snapshot only while it runs, snapshot load only on a
// fresh VMM. Pure: what actually boots, pauses and snapshots a VM is a
// MachineBackend (vmm/api_vmm.h has the real one; tests and the fuzzer use fakes).
//
// Every refusal is an Error whose message goes to the client verbatim as
// {"fault_message": "..."}: one sentence saying what is wrong and what to do.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "base/result.h"

namespace ember {

enum class InstanceState {
  kNotStarted,  // configuring; no VM exists yet
  kRunning,
  kPaused,
  kExited,  // the guest ended (program exit, fault, timeout) or the VM failed; the API keeps answering
};
// Firecracker's spelling for the first three ("Not started", "Running",
// "Paused"); Ember adds "Exited".
const char* instance_state_name(InstanceState s);

// PUT /boot-source. kernel_image_path: the guest kernel (ember-guest.elf);
// initrd_path: the Ember function image (`ember-image pack`); boot_args: the
// guest kernel command line.
struct BootSourceSpec {
  std::string kernel_image_path;
  std::optional<std::string> boot_args;
  std::optional<std::string> initrd_path;
};

// PUT/PATCH /machine-config. Ember runs one vCPU; smt, cpu_template and
// huge_pages are accepted only with the values that mean "off".
struct MachineSpec {
  uint32_t vcpu_count = 1;
  uint64_t mem_size_mib = 128;
  bool smt = false;
  bool track_dirty_pages = false;
};
inline constexpr uint64_t kApiMinMemMib = 16;
inline constexpr uint64_t kApiMaxMemMib = 3072;

// PUT /vsock (Firecracker's host-side convention: `uds_path` is the Unix
// socket host programs connect to; guest-initiated connections to port P go
// to `uds_path`_P).
struct VsockSpec {
  uint64_t guest_cid = 0;  // >= 3
  std::string uds_path;
};

// PUT /metrics.
struct MetricsSpec {
  std::string metrics_path;
};

enum class SnapshotType { kFull, kDiff };

// PUT /snapshot/create. Ember's snapshot is a directory (vm.vmstate, vm.mem,
// vm.img); see api/openapi-vmm.yaml for how these two paths map onto it.
struct SnapshotCreateSpec {
  std::string snapshot_path;
  std::string mem_file_path;
  SnapshotType type = SnapshotType::kFull;
};

// PUT /snapshot/load.
struct SnapshotLoadSpec {
  std::string snapshot_path;
  std::string mem_file_path;  // mem_backend.backend_path (File), or the deprecated mem_file_path
  bool resume_vm = false;
  bool track_dirty_pages = false;
  std::optional<std::string> vsock_uds_override;
};

// Everything configured so far (GET /vm/config shows it).
struct VmmConfig {
  std::optional<BootSourceSpec> boot_source;
  MachineSpec machine;
  std::optional<VsockSpec> vsock;
  std::optional<MetricsSpec> metrics;
  bool restored = false;  // the VM came from /snapshot/load: boot-source is unknown
};

// What the API asks of the VMM. Every method is called from the event loop
// thread, only in a state the controller has already checked; each returns
// when the operation is complete (pause: the vCPU is stopped).
class MachineBackend {
 public:
  virtual ~MachineBackend() = default;
  // Boots a VM from `config` (boot_source present). Afterwards: running.
  virtual Result<void> start(const VmmConfig& config) = 0;
  virtual Result<void> pause() = 0;
  virtual Result<void> resume() = 0;
  // The VM is paused.
  virtual Result<void> create_snapshot(const SnapshotCreateSpec& spec) = 0;
  // No VM exists yet. Afterwards the VM exists, paused, and `config` holds
  // the snapshot's machine configuration and vsock device (with the
  // override applied).
  virtual Result<void> load_snapshot(const SnapshotLoadSpec& spec, VmmConfig* config) = 0;
  // The program has first blocked reading stdin (the template snapshot
  // point); stays true after a snapshot load of such a VM.
  virtual bool guest_ready() const { return false; }
};

// The state machine. Requests that break the rules fail with an Error
// naming the rule; the backend is called only for allowed ones.
class VmmController {
 public:
  explicit VmmController(MachineBackend* backend) : backend_(backend) {}

  InstanceState state() const { return state_; }
  bool guest_ready() const { return state_ != InstanceState::kNotStarted && backend_->guest_ready(); }
  const VmmConfig& config() const { return config_; }
  // After kExited: the program's exit status (or the VMM's 124/125) and why.
  int exit_status() const { return exit_status_; }

  Result<void> set_boot_source(BootSourceSpec spec);
  Result<void> put_machine_config(const MachineSpec& spec);
  // PATCH: only the fields present change.
  Result<void> patch_machine_config(std::optional<uint32_t> vcpu_count, std::optional<uint64_t> mem_size_mib,
                                    std::optional<bool> smt, std::optional<bool> track_dirty_pages);
  Result<void> set_vsock(VsockSpec spec);
  // Records the metrics destination; the caller opens it first.
  Result<void> set_metrics(MetricsSpec spec);

  Result<void> instance_start();
  Result<void> pause();
  Result<void> resume();
  Result<void> create_snapshot(const SnapshotCreateSpec& spec);
  Result<void> load_snapshot(const SnapshotLoadSpec& spec);

  // The event loop calls this when the guest ended on its own.
  void on_vm_exit(int status, std::string message);

  // Checks shared by the API and --config-file (pure).
  static Result<void> validate_machine(const MachineSpec& spec);
  static Result<void> validate_vsock(const VsockSpec& spec);
  static Result<void> validate_path(const std::string& field, const std::string& path);

 private:
  Result<void> require_pre_boot(const char* resource) const;
  Result<void> require_started(const char* what) const;

  MachineBackend* backend_;
  VmmConfig config_;
  InstanceState state_ = InstanceState::kNotStarted;
  bool boot_resources_set_ = false;  // boot-source, machine-config or vsock configured
  int exit_status_ = 0;
  std::string exit_message_;
};

}  // namespace ember
