// Rewrites ember-vmm arguments for a jail. Two commands are jailed:
//   run [OPTIONS] (PROGRAM | --image IMG) [ARGS...]
//   restore [OPTIONS] DIR
// The files the VM reads (guest kernel, PROGRAM or --image IMG, the snapshot
// directory DIR) are brought into the jail's root under their base names,
// read-only, and the arguments are changed to those in-jail paths. What the
// VMM creates (--vsock-uds sockets, the --snapshot-at-ready directory) goes to
// the jail's one writable directory, /run, which is the host's
// CHROOT_BASE/ember-vmm/ID/run: the caller finds it there under the same base
// name. --kernel is always explicit (there is no /proc in the jail to find
// ember-guest.elf next to the binary) and --id ID is added.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"

namespace ember::jail {

// The jail's writable directory, for what the VMM creates: /run in the jail,
// CHROOT_BASE/ember-vmm/ID/run on the host.
inline constexpr const char* kJailRunDir = "run";

struct JailFile {
  // kSnapshot is a directory (vm.vmstate, vm.mem, vm.img), bound read-only:
  // restored VMs map vm.mem copy-on-write and share its page cache.
  enum class Role { kKernel, kImage, kProgram, kSnapshot } role;
  std::string host_path;  // as given to ember-vmm (relative paths allowed)
  std::string jail_name;  // name in the jail's root: basename of host_path
};

struct VmmInvocation {
  std::vector<std::string> args;  // "run"/"restore", "--id", ID, ... with in-jail paths
  std::vector<JailFile> files;
  std::vector<std::string> outputs;  // base names the VMM creates in /run (empty: no /run)
};

// vmm_args: what followed `--` ("run" or "restore", options, ...).
// default_kernel: ember-guest.elf next to --exec-file. reserved: names already
// taken in the jail's root (the VMM binary's, "dev", "run").
Result<VmmInvocation> rewrite_vmm_args(const std::vector<std::string>& vmm_args, const std::string& id,
                                       const std::string& default_kernel, const std::vector<std::string>& reserved);

// The options ember-jailer knows, by command and kind, so that a new
// ember-vmm option cannot slip past the rewriting unnoticed (a unit test
// compares these with `ember-vmm run --help` and `ember-vmm restore --help`).
const std::vector<std::string>& vmm_value_options();          // run, with a value: --kernel, --mem-mib, ...
const std::vector<std::string>& vmm_flag_options();           // run, no value: -v, --verbose, --no-seccomp
const std::vector<std::string>& vmm_restore_value_options();  // restore, with a value: --vsock-uds, --repeat, ...
const std::vector<std::string>& vmm_restore_flag_options();   // restore, no value

}  // namespace ember::jail
