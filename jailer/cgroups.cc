#include "jailer/cgroups.h"

#include <fcntl.h>
#include <signal.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <set>

#include "jailer/paths.h"
#include "jailer/plain_text.h"

namespace ember::jail {

namespace {

std::vector<std::string> words_of(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : text) {
    if (c == ' ' || c == '\n' || c == '\t') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string join(const std::string& a, const std::string& b) {
  if (b.empty()) return a;
  if (a.empty() || a == "/") return "/" + b;
  return a + "/" + b;
}

// "/a/b/" -> "a/b"
std::string strip_slashes(const std::string& p) {
  size_t b = 0, e = p.size();
  while (b < e && p[b] == '/') b++;
  while (e > b && p[e - 1] == '/') e--;
  return p.substr(b, e - b);
}

// "a/b/c" -> {"a/b", "a", ""}: the ancestors below a hierarchy's root,
// nearest first, the root itself ("") last.
std::vector<std::string> ancestors_of(const std::string& rel) {
  std::vector<std::string> out;
  if (rel.empty()) return out;
  for (std::string cur = rel; cur.find('/') != std::string::npos;) {
    cur.resize(cur.rfind('/'));
    out.push_back(cur);
  }
  out.push_back("");
  return out;
}

// The default parent below `rel`: "rel/ember", or "ember" at the root.
std::string ember_below(const std::string& rel) { return rel.empty() ? "ember" : rel + "/ember"; }

Result<void> write_file(const std::string& path, const std::string& value, const std::string& hint = "") {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) return errno_error("open " + path);
  if (::write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size())) {
    Error e = errno_error("write '" + value + "' to " + path);
    e.message += hint;
    return e;
  }
  return Ok();
}

const CgroupMount* find_mount(const std::vector<CgroupMount>& mounts, int version, const std::string& controller) {
  for (const CgroupMount& m : mounts) {
    if (m.version != version) continue;
    if (version == 2) return &m;
    if (std::find(m.controllers.begin(), m.controllers.end(), controller) != m.controllers.end()) return &m;
  }
  return nullptr;
}

bool has_controller(const CgroupMount& m, const std::string& c) {
  return std::find(m.controllers.begin(), m.controllers.end(), c) != m.controllers.end();
}

}  // namespace

const std::vector<CgroupKey>& cgroup_keys() {
  static const std::vector<CgroupKey> keys = {
      {"memory.limit_in_bytes", 1, "memory", "memory limit in bytes (K/M/G suffixes)", "memory.max"},
      {"memory.memsw.limit_in_bytes", 1, "memory", "memory + swap limit (set after memory.limit_in_bytes)",
       "memory.swap.max"},
      {"memory.soft_limit_in_bytes", 1, "memory", "memory reclaimed first above this", "memory.high"},
      {"cpu.cfs_quota_us", 1, "cpu", "CPU time per period in µs (-1: none)", "cpu.max"},
      {"cpu.cfs_period_us", 1, "cpu", "the CFS period in µs", "cpu.max"},
      {"cpu.shares", 1, "cpu", "relative CPU weight (1024: default)", "cpu.weight"},
      {"cpuset.cpus", 1, "cpuset", "CPUs the VM may run on, e.g. 0-1", "cpuset.cpus"},
      {"cpuset.mems", 1, "cpuset", "memory nodes, e.g. 0", "cpuset.mems"},
      {"pids.max", 1, "pids", "most tasks (threads included)", "pids.max"},
      {"memory.max", 2, "memory", "memory limit in bytes (K/M/G suffixes, or max)", "memory.limit_in_bytes"},
      {"memory.high", 2, "memory", "memory throttled above this", "memory.soft_limit_in_bytes"},
      {"memory.swap.max", 2, "memory", "swap limit", "memory.memsw.limit_in_bytes"},
      {"cpu.max", 2, "cpu", "\"QUOTA PERIOD\" in µs, e.g. \"50000 100000\"", "cpu.cfs_quota_us"},
      {"cpu.weight", 2, "cpu", "relative CPU weight 1-10000 (100: default)", "cpu.shares"},
      {"cpuset.cpus", 2, "cpuset", "CPUs the VM may run on, e.g. 0-1", "cpuset.cpus"},
      {"cpuset.mems", 2, "cpuset", "memory nodes, e.g. 0", "cpuset.mems"},
      {"pids.max", 2, "pids", "most tasks (threads included)", "pids.max"},
  };
  return keys;
}

Result<void> check_cgroup_setting(const CgroupSetting& s, int version) {
  const CgroupKey* match = nullptr;
  const CgroupKey* other = nullptr;
  for (const CgroupKey& k : cgroup_keys()) {
    if (s.key != k.key) continue;
    if (version == 0 || k.version == version) match = &k;
    else other = &k;
  }
  if (!match) {
    if (other)
      return Error{"--cgroup " + s.key + ": a cgroup v" + std::to_string(other->version) + " key; with cgroup v" +
                   std::to_string(version) + " use " + other->other_version};
    std::string known;
    for (const CgroupKey& k : cgroup_keys())
      if (known.find(std::string(k.key) + ",") == std::string::npos) known += std::string(k.key) + ", ";
    return Error{"--cgroup " + s.key + ": unknown key (known: " + known.substr(0, known.size() - 2) + ")"};
  }
  if (s.value.empty() || s.value.size() > 64) return Error{"--cgroup " + s.key + ": value must be 1-64 characters"};
  for (char c : s.value)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == ' ' || c == '-' || c == ',' || c == '.' || c == ':'))
      return Error{"--cgroup " + s.key + "=" + s.value + ": unexpected character in the value"};
  return Ok();
}

Result<CgroupPlan> plan_cgroups(const JailerOptions& o, const std::vector<CgroupMount>& mounts,
                                const std::string& proc_self_cgroup, const HasProcesses& v2_has_processes) {
  CgroupPlan plan;
  // Version: asked for, or forced by the keys, or what the machine offers.
  int version = o.cgroup_version;
  std::vector<std::string> needed;  // controllers of the keys
  if (version == 0) {
    bool v1_only = false, v2_only = false;
    for (const CgroupSetting& s : o.cgroups) {
      bool in1 = false, in2 = false;
      for (const CgroupKey& k : cgroup_keys())
        if (s.key == k.key) (k.version == 1 ? in1 : in2) = true;
      v1_only |= in1 && !in2;
      v2_only |= in2 && !in1;
    }
    if (v1_only && v2_only) return Error{"--cgroup: the keys mix cgroup v1 and v2 names; use one version's"};
    if (v1_only) version = 1;
    if (v2_only) version = 2;
  }
  for (const CgroupSetting& s : o.cgroups) {
    EMBER_TRY_VOID(check_cgroup_setting(s, version));
    const std::string c = s.key.substr(0, s.key.find('.'));
    if (std::find(needed.begin(), needed.end(), c) == needed.end()) needed.push_back(c);
  }
  const CgroupMount* v2 = find_mount(mounts, 2, "");
  if (version == 0) {
    bool v2_has_all = v2 != nullptr;
    for (const std::string& c : needed) v2_has_all = v2_has_all && has_controller(*v2, c);
    bool v1_has_all = true;
    for (const std::string& c : needed) v1_has_all = v1_has_all && find_mount(mounts, 1, c);
    const bool any_v1 = std::any_of(mounts.begin(), mounts.end(), [](const CgroupMount& m) { return m.version == 1; });
    // Pure v2 (or controllers there): v2. Hybrid machines keep their
    // controllers in v1.
    if (v2_has_all && (!needed.empty() || !any_v1)) version = 2;
    else if (any_v1 && v1_has_all) version = 1;
    else if (v2) version = 2;
    else return Error{"no cgroup hierarchy is mounted (looked in /proc/self/mountinfo)"};
  }
  plan.version = version;

  auto parent_for = [&](int v, const std::string& controller) -> std::string {
    if (!o.parent_cgroup.empty()) return strip_slashes(o.parent_cgroup);
    const std::string own = strip_slashes(own_cgroup(proc_self_cgroup, v, controller));
    // v2's "no internal processes" rule: a cgroup (but the root) with
    // processes of its own, as the jailer's own cgroup always has (the
    // jailer), cannot give its children controllers. With controllers to
    // enable, the jails go below the nearest ancestor without processes.
    if (v == 2 && !needed.empty())
      for (const std::string& a : ancestors_of(own))
        if (a.empty() || !v2_has_processes(a)) return ember_below(a);
    return ember_below(own);
  };

  if (version == 1) {
    std::vector<std::string> controllers = needed;
    if (std::find(controllers.begin(), controllers.end(), "pids") == controllers.end() && find_mount(mounts, 1, "pids"))
      controllers.push_back("pids");  // always: --cleanup finds and kills every process of the jail through it
    for (const std::string& c : controllers) {
      const CgroupMount* m = find_mount(mounts, 1, c);
      if (!m) {
        std::string hint = v2 && has_controller(*v2, c) ? " (it is available in cgroup v2: use v2 keys or --cgroup-version 2)" : "";
        return Error{"cgroup v1: the " + c + " controller is not mounted (no cgroup mount lists it in /proc/self/mountinfo)" + hint};
      }
      // co-mounted controllers (cpu,cpuacct) share one directory
      bool same = false;
      for (CgroupDir& d : plan.dirs)
        if (d.mount == m->path) {
          same = true;
          for (const CgroupSetting& s : o.cgroups)
            if (s.key.substr(0, s.key.find('.')) == c) d.settings.push_back(s);
        }
      if (same) continue;
      CgroupDir d;
      d.version = 1;
      d.controller = c;
      d.mount = m->path;
      d.parent = parent_for(1, c);
      d.path = join(join(d.mount, d.parent), o.id);
      for (const CgroupSetting& s : o.cgroups)
        if (s.key.substr(0, s.key.find('.')) == c) d.settings.push_back(s);
      plan.dirs.push_back(d);
    }
    return plan;
  }

  if (!v2) return Error{"cgroup v2 is not mounted (no cgroup2 mount in /proc/self/mountinfo); use --cgroup-version 1"};
  for (const std::string& c : needed)
    if (!has_controller(*v2, c)) {
      const CgroupMount* v1 = find_mount(mounts, 1, c);
      return Error{"cgroup v2: the " + c + " controller is not available in " + v2->path +
                   "/cgroup.controllers" +
                   (v1 ? " (it is bound to the cgroup v1 hierarchy " + v1->path +
                             ": use v1 keys or --cgroup-version 1)"
                       : "")};
    }
  CgroupDir d;
  d.version = 2;
  d.mount = v2->path;
  d.parent = parent_for(2, "");
  d.path = join(join(d.mount, d.parent), o.id);
  d.enable = needed;
  d.settings = o.cgroups;
  plan.dirs.push_back(d);
  return plan;
}

namespace {

// The usual layouts without reading /proc/self/mountinfo (which the kernel
// renders for every call: ~100 µs here): /sys/fs/cgroup as cgroup2, or v1
// controllers at /sys/fs/cgroup/<controller> (and a v2 at .../unified).
// Empty if some controller the jail needs is not where it usually is.
std::vector<CgroupMount> standard_cgroup_mounts(const JailerOptions& o) {
  auto magic = [](const std::string& path) -> long {
    struct statfs sf;
    return ::statfs(path.c_str(), &sf) == 0 ? static_cast<long>(sf.f_type) : 0;
  };
  std::vector<CgroupMount> out;
  if (magic("/sys/fs/cgroup") == CGROUP2_SUPER_MAGIC) {
    out.push_back(CgroupMount{2, "/sys/fs/cgroup", {}});
    return out;
  }
  std::vector<std::string> needed = {"pids"};
  for (const CgroupSetting& s : o.cgroups) {
    const std::string c = s.key.substr(0, s.key.find('.'));
    if (std::find(needed.begin(), needed.end(), c) == needed.end()) needed.push_back(c);
  }
  for (const std::string& c : needed) {
    if (magic("/sys/fs/cgroup/" + c) != CGROUP_SUPER_MAGIC) return {};
    out.push_back(CgroupMount{1, "/sys/fs/cgroup/" + c, {c}});
  }
  if (magic("/sys/fs/cgroup/unified") == CGROUP2_SUPER_MAGIC)
    out.push_back(CgroupMount{2, "/sys/fs/cgroup/unified", {}});
  return out;
}

}  // namespace

Result<CgroupPlan> plan_cgroups_here(const JailerOptions& o) {
  auto mounts = standard_cgroup_mounts(o);
  if (mounts.empty()) {
    const std::string mountinfo = read_text("/proc/self/mountinfo");
    if (mountinfo.empty()) return Error{"cannot read /proc/self/mountinfo (is /proc mounted?)"};
    mounts = parse_cgroup_mounts(mountinfo);
  }
  for (CgroupMount& m : mounts)
    if (m.version == 2) m.controllers = words_of(read_text(m.path + "/cgroup.controllers"));
  const CgroupMount* v2 = find_mount(mounts, 2, "");
  auto has_processes = [&](const std::string& rel) {
    return !trim(read_text(join(v2 ? v2->path : "/sys/fs/cgroup", rel) + "/cgroup.procs")).empty();
  };
  return plan_cgroups(o, mounts, read_text("/proc/self/cgroup"), has_processes);
}

namespace {

// cgroup v1 cpuset: a new directory starts with no CPUs and no memory nodes,
// and nothing can join it; give it its parent's.
Result<void> inherit_cpuset(const std::string& dir) {
  for (const char* f : {"cpuset.cpus", "cpuset.mems"}) {
    if (!trim(read_text(dir + "/" + f)).empty()) continue;
    const std::string parent = trim(read_text(dirname_of(dir) + "/" + f));
    if (!parent.empty()) EMBER_TRY_VOID(write_file(dir + "/" + f, parent));
  }
  return Ok();
}

Result<void> enable_controllers(const std::string& dir, const std::vector<std::string>& controllers) {
  if (controllers.empty()) return Ok();
  std::set<std::string> have;
  for (const std::string& c : words_of(read_text(dir + "/cgroup.subtree_control"))) have.insert(c);
  for (const std::string& c : controllers) {
    if (have.count(c)) continue;
    EMBER_TRY_VOID(write_file(dir + "/cgroup.subtree_control", "+" + c,
                              " (cgroup v2 enables a controller for children only in a cgroup without processes of "
                              "its own: pass --parent-cgroup to place jails elsewhere)"));
  }
  return Ok();
}

}  // namespace

Result<std::vector<Fd>> create_cgroups(const CgroupPlan& plan, std::vector<std::string>* created) {
  std::vector<Fd> procs;
  for (const CgroupDir& d : plan.dirs) {
    // Parents: made if missing (shared by all jails, left in place).
    std::string cur = d.mount;
    if (d.version == 2) EMBER_TRY_VOID(enable_controllers(cur, d.enable));
    for (const std::string& comp : path_components("/" + d.parent)) {
      cur = join(cur, comp);
      if (::mkdir(cur.c_str(), 0755) < 0 && errno != EEXIST) return errno_error("mkdir " + cur);
      struct stat st;
      if (::lstat(cur.c_str(), &st) < 0 || !S_ISDIR(st.st_mode)) return Error{cur + ": not a cgroup directory"};
      if (d.version == 1 && d.controller == "cpuset") EMBER_TRY_VOID(inherit_cpuset(cur));
      if (d.version == 2) EMBER_TRY_VOID(enable_controllers(cur, d.enable));
    }
    if (::mkdir(d.path.c_str(), 0755) < 0) {
      if (errno == EEXIST)
        return Error{"mkdir " + d.path + ": already exists (a jail with this id exists; `ember-jailer --cleanup --id " +
                     basename_of(d.path) + "` removes it)"};
      return errno_error("mkdir " + d.path);
    }
    created->push_back(d.path);
    if (d.version == 1 && d.controller == "cpuset") EMBER_TRY_VOID(inherit_cpuset(d.path));
    for (const CgroupSetting& s : d.settings) EMBER_TRY_VOID(write_file(d.path + "/" + s.key, s.value));
    // v1: "tasks", through which the jailed child moves itself in (see
    // jail.cc); v2: the directory itself, for clone3(CLONE_INTO_CGROUP).
    const std::string file = d.version == 1 ? d.path + "/tasks" : d.path;
    Fd fd(::open(file.c_str(), d.version == 1 ? O_WRONLY | O_CLOEXEC : O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd.valid()) return errno_error("open " + file);
    procs.push_back(std::move(fd));
  }
  return procs;
}

namespace {

// Kills `pid` only if it is still in the group once we hold its pidfd: the
// pid then names that process for as long as it lives, so it cannot be a
// stranger that reused the pid after the member exited (v1 has no
// cgroup.kill to do this atomically).
void kill_member(const std::string& procs_file, long pid) {
  const Fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0)));
  if (!pidfd.valid()) return;
  for (const std::string& w : words_of(read_text(procs_file)))
    if (std::strtol(w.c_str(), nullptr, 10) == pid) {
      ::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
      return;
    }
}

}  // namespace

Result<void> remove_cgroup(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) < 0) {
    if (errno == ENOENT) return Ok();
    return errno_error("stat " + path);
  }
  if (!S_ISDIR(st.st_mode)) return Error{path + ": not a directory"};
  // v2 can kill the whole group at once; otherwise one pid at a time.
  if (::access((path + "/cgroup.kill").c_str(), W_OK) == 0) (void)write_file(path + "/cgroup.kill", "1");
  for (int i = 0; i < 5000; i++) {
    bool any = false;
    const std::string procs = path + "/cgroup.procs";
    for (const std::string& w : words_of(read_text(procs))) {
      const long pid = std::strtol(w.c_str(), nullptr, 10);
      any = true;
      if (pid > 0) kill_member(procs, pid);
    }
    if (!any && ::rmdir(path.c_str()) == 0) return Ok();
    if (!any && errno != EBUSY) {
      if (errno == ENOENT) return Ok();
      return errno_error("rmdir " + path);
    }
    const timespec ms{0, 1000000};
    ::nanosleep(&ms, nullptr);
  }
  return Error{"rmdir " + path + ": its processes did not go away within 5 s"};
}

std::vector<std::string> candidate_cgroup_dirs(const JailerOptions& o) {
  std::vector<std::string> out;
  const std::string mountinfo = read_text("/proc/self/mountinfo");
  const std::string self = read_text("/proc/self/cgroup");
  for (const CgroupMount& m : parse_cgroup_mounts(mountinfo)) {
    std::vector<std::string> parents;
    if (!o.parent_cgroup.empty()) parents.push_back(strip_slashes(o.parent_cgroup));
    const std::string own = strip_slashes(own_cgroup(self, m.version, m.version == 1 ? m.controllers[0] : ""));
    parents.push_back(ember_below(own));
    // v2: where plan_cgroups may have moved the default, an ancestor's ember/
    for (const std::string& a : ancestors_of(own)) parents.push_back(ember_below(a));
    for (const std::string& p : parents) {
      const std::string dir = join(join(m.path, p), o.id);
      if (std::find(out.begin(), out.end(), dir) == out.end()) out.push_back(dir);
    }
  }
  return out;
}

bool is_cgroup_dir_of(const std::string& path, const std::string& id) {
  if (path.empty() || path[0] != '/' || basename_of(path) != id) return false;
  if (path.find("/../") != std::string::npos || path.find("/./") != std::string::npos) return false;
  for (const CgroupMount& m : parse_cgroup_mounts(read_text("/proc/self/mountinfo")))
    if (path.size() > m.path.size() + 1 && path.compare(0, m.path.size(), m.path) == 0 && path[m.path.size()] == '/')
      return true;
  return false;
}

std::string memory_dir(const CgroupPlan& plan) {
  for (const CgroupDir& d : plan.dirs) {
    if (d.version == 2) {
      for (const CgroupSetting& s : d.settings)
        if (s.key.rfind("memory.", 0) == 0) return d.path;
    } else if (d.controller == "memory") {
      return d.path;
    }
  }
  return "";
}

std::string memory_limit_text(const CgroupPlan& plan) {
  for (const CgroupDir& d : plan.dirs)
    for (const CgroupSetting& s : d.settings)
      if (s.key == "memory.limit_in_bytes" || s.key == "memory.max") return s.key + "=" + s.value;
  return "";
}

}  // namespace ember::jail
