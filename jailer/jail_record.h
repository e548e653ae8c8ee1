// What ember-jailer leaves on a jail directory (CHROOT_BASE/ember-vmm/ID)
// for whoever comes after it: the record of the jail's cgroup directories
// (for --cleanup, which may run from another cgroup and cannot work them
// out again, and for emberd's OOM verdicts), the VMM's pid with --detach,
// and how to read a memory cgroup's OOM kills. One place for the format:
// the jailer writes it, the jailer's --cleanup and emberd read it.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"

namespace ember::jail {

// --detach: the VMM's pid, "PID\n" (the jail directory is root's alone).
inline constexpr const char* kJailPidFile = "vmm.pid";

// The cgroup directories, one per line: an extended attribute in the
// trusted.* namespace (only root reads or writes it; no inode to create),
// or a file "cgroups" where the file system has no xattrs. `jail_dir` names
// the directory in messages.
Result<void> write_cgroup_record(int jail_fd, const std::string& jail_dir, const std::vector<std::string>& dirs);
// The directories recorded on the jail directory `jail_fd`; empty if none.
std::vector<std::string> read_cgroup_record(int jail_fd);

// How many processes a memory cgroup directory has OOM-killed: v2's
// memory.events or v1's memory.oom_control, whichever it has; 0 if neither
// (or "" for no directory).
long oom_kills(const std::string& memory_dir);

}  // namespace ember::jail
