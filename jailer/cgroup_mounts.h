// Where the cgroup hierarchies are mounted and which cgroup a process is in:
// for ember-jailer (where to make a jail's cgroups) and for emberd (the task
// limit it and its VMs run under).
#pragma once

#include <string>
#include <vector>

namespace ember::jail {

struct CgroupMount {
  int version = 0;                       // 1 or 2
  std::string path;                      // "/sys/fs/cgroup/memory"
  std::vector<std::string> controllers;  // v1: from the mount options; v2: filled from cgroup.controllers
};
// Parses /proc/self/mountinfo: every cgroup (v1, with controllers; named
// hierarchies like name=systemd skipped) and cgroup2 mount.
std::vector<CgroupMount> parse_cgroup_mounts(const std::string& mountinfo);
// The calling process's cgroup in a hierarchy, from /proc/self/cgroup text:
// v1 by controller, v2 by the "0::" line. Empty if not listed.
std::string own_cgroup(const std::string& proc_self_cgroup, int version, const std::string& controller);

}  // namespace ember::jail
