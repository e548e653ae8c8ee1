// ember-jailer's command line, parsed without touching the system (unit
// tests): syntax, the id, cgroup keys and values, rlimits. Whatever needs
// the file system (paths, users, cgroup mounts) is checked in step 1 of the
// jail (jailer/jail.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"

namespace ember::jail {

struct CgroupSetting {
  std::string key;    // "memory.limit_in_bytes"
  std::string value;  // "67108864"
};

struct JailerOptions {
  enum class Mode { kHelp, kJail, kCleanup } mode = Mode::kHelp;
  std::string id;
  std::string exec_file;
  std::string uid, gid;  // as given: a number or a name
  std::string chroot_base = "/srv/jailer";
  std::vector<CgroupSetting> cgroups;
  int cgroup_version = 0;     // 0: auto (v2 where it has the controllers, else v1)
  std::string parent_cgroup;  // empty: "<the jailer's own cgroup>/ember" in each hierarchy
  std::string netns;
  bool new_pid_ns = false;
  bool daemonize = false;
  bool detach = false;      // the VMM becomes the caller's child; ember-jailer exits once it runs
  bool copy_files = false;  // copy instead of read-only bind mounts
  bool tun = false;         // also /dev/net/tun
  std::optional<uint64_t> rlimit_fsize;
  uint64_t rlimit_nofile = 2048;
  std::vector<std::string> vmm_args;  // after "--": "run", ...
};

// [A-Za-z0-9-]{1,64}
bool valid_id(const std::string& id);

// argv without the program name. Errors are usage errors (exit 2).
Result<JailerOptions> parse_jailer_cli(const std::vector<std::string>& argv);

std::string jailer_usage_text();

}  // namespace ember::jail
