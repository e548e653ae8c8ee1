// Rewrites `ember-vmm run ...` arguments for a jail: the files the VM needs
// (guest kernel, PROGRAM or --image IMG) are brought into the jail's root
// under their base names, and the arguments are changed to those in-jail
// paths; --kernel is always explicit (there is no /proc in the jail to find
// ember-guest.elf next to the binary) and --id ID is added.
#pragma once

#include <string>
#include <vector>

#include "vmm/result.h"

namespace ember::jail {

struct JailFile {
  enum class Role { kKernel, kImage, kProgram } role;
  std::string host_path;  // as given to ember-vmm (relative paths allowed)
  std::string jail_name;  // name in the jail's root: basename of host_path
};

struct VmmInvocation {
  std::vector<std::string> args;  // "run", "--id", ID, ... with in-jail paths
  std::vector<JailFile> files;
};

// vmm_args: what followed `--` ("run", options, PROGRAM...). default_kernel:
// ember-guest.elf next to --exec-file. reserved: names already taken in the
// jail's root (the VMM binary's, "dev").
Result<VmmInvocation> rewrite_vmm_args(const std::vector<std::string>& vmm_args, const std::string& id,
                                       const std::string& default_kernel, const std::vector<std::string>& reserved);

// The run options ember-jailer knows, by kind, so that a new ember-vmm option
// cannot slip past the rewriting unnoticed (a unit test compares these with
// `ember-vmm run --help`).
const std::vector<std::string>& vmm_value_options();  // take a value: --kernel, --mem-mib, ...
const std::vector<std::string>& vmm_flag_options();   // no value: -v, --verbose, --no-seccomp

}  // namespace ember::jail
