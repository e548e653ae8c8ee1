// cgroups for a jail, v1 and v2. Pure parts (which keys exist, where each
// hierarchy is mounted, which directories a jail gets) are separate from the
// parts that write to /sys/fs/cgroup, so that they are unit-testable.
//
// Layout: in every hierarchy a jail needs, the directory
//   <mount>/<parent>/<ID>
// where <parent> is --parent-cgroup, or by default "<the jailer's own
// cgroup>/ember": a jailed VM never leaves the resource limits its caller
// runs under. Except on v2 with limits to set: a cgroup with processes of its
// own (the jailer's cgroup has the jailer) cannot enable controllers for its
// children, so the default is "<nearest ancestor without processes>/ember"
// (the root's at worst), as for a systemd service without Delegate=.
// v1: one directory per controller used by a key, plus pids always (so
// that --cleanup can find and kill every process of the jail);
// v2: one directory, with the keys' controllers enabled on the way down.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "jailer/cgroup_mounts.h"
#include "jailer/jailer_cli.h"

namespace ember::jail {

struct CgroupKey {
  const char* key;
  int version;  // 1 or 2
  const char* controller;
  const char* what;          // one line, for --help
  const char* other_version;  // the nearest key of the other version, or ""
};
const std::vector<CgroupKey>& cgroup_keys();
// Checks key and value syntax (version 0: valid in either).
Result<void> check_cgroup_setting(const CgroupSetting& s, int version);

struct CgroupDir {
  int version = 0;
  std::string controller;                  // v1: the controller; v2: ""
  std::string mount;                       // hierarchy root
  std::string parent;                      // below the root, "" for the root itself: "process_api/x/ember"
  std::string path;                        // mount/parent/ID
  std::vector<std::string> enable;         // v2: controllers to enable on the way down
  std::vector<CgroupSetting> settings;     // what to write, in order
};
struct CgroupPlan {
  int version = 0;
  std::vector<CgroupDir> dirs;
};

// Whether a v2 cgroup ("a/b" below the v2 mount, "" the root) has processes
// of its own.
using HasProcesses = std::function<bool(const std::string& rel)>;

// Decides version and directories. `mounts` v2 entries must have their
// controllers filled. Errors name what is missing and what to do.
Result<CgroupPlan> plan_cgroups(const JailerOptions& o, const std::vector<CgroupMount>& mounts,
                                const std::string& proc_self_cgroup, const HasProcesses& v2_has_processes);

// Reads the system: mountinfo and /proc/self/cgroup, v2 controllers.
Result<CgroupPlan> plan_cgroups_here(const JailerOptions& o);

// Creates the plan's directories and writes the settings. `created` gets
// every directory made (innermost last) even on failure, for removal.
// Returns one fd per directory: v1, its "tasks" file; v2, the directory (for
// clone3's CLONE_INTO_CGROUP).
Result<std::vector<Fd>> create_cgroups(const CgroupPlan& plan, std::vector<std::string>* created);

// Kills every process in a jail cgroup directory, waits (up to ~5 s) until it
// is empty, and removes it. A missing directory is not an error.
Result<void> remove_cgroup(const std::string& path);

// Where --cleanup looks when the jail has no record of its cgroups: the
// default and the --parent-cgroup locations in every hierarchy mounted here.
std::vector<std::string> candidate_cgroup_dirs(const JailerOptions& o);

// Whether `path` is a directory ID inside a cgroup hierarchy mounted here
// (for paths read back from a jail's record before removing them).
bool is_cgroup_dir_of(const std::string& path, const std::string& id);

// The memory cgroup of a plan ("" if none; its OOM kills: jail_record.h).
std::string memory_dir(const CgroupPlan& plan);
std::string memory_limit_text(const CgroupPlan& plan);  // "memory.limit_in_bytes=67108864" or ""

}  // namespace ember::jail
