#include "jailer/jail.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

#include "api/snapshot_files.h"
#include "base/clock.h"
#include "base/fd.h"
#include "jailer/cgroups.h"
#include "jailer/jail_record.h"
#include "jailer/paths.h"
#include "jailer/plain_text.h"
#include "jailer/vfork_spawn.h"
#include "jailer/vmm_args.h"

namespace ember::jail {

namespace {

// EMBER_JAILER_TRACE=1 (read before the environment is cleared): one line
// on stderr right before the exec, with µs since ember-jailer's main() for
// each step, like ember-vmm's EMBER_TRACE line (bench/ reads neither).
struct Trace {
  bool on = false;
  uint64_t t0 = 0;
  std::string line;
  void mark(const char* what) {
    if (on) line += " " + std::string(what) + "_us=" + std::to_string((monotonic_ns() - t0) / 1000);
  }
};
Trace g_trace;  // this file's only global: a diagnostic, written by one thread

const char* step_name(int step) {
  switch (step) {
    case 1: return "validate";
    case 2: return "fds and environment";
    case 3: return "jail directory";
    case 4: return "network namespace and rlimits";
    case 5: return "cgroups";
    case 6: return "mount namespace";
    case 7: return "PID namespace and daemon";
    case 8: return "drop privileges and exec";
    default: return "cleanup";
  }
}

std::string step_text(int step, const std::string& message) {
  return "step " + std::to_string(step) + " (" + step_name(step) + "): " + message;
}

void print_line(const std::string& text) {
  const std::string line = "ember-jailer: " + text + "\n";
  ssize_t r = ::write(2, line.data(), line.size());
  (void)r;
}

// --uid/--gid: a number (any but 0 and -1: accounts need not exist, as with
// one uid per VM) or a name looked up in /etc/passwd or /etc/group (read
// directly: a static binary has no NSS).
Result<uint32_t> resolve_id(const std::string& s, const char* option, const char* file, const char* kind) {
  uint32_t id = 0;
  bool numeric = !s.empty() && s.size() <= 10;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') numeric = false;
    else v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (numeric) {
    if (v >= 0xffffffffull)
      return Error{std::string(option) + " " + s + ": not a valid " + kind + " id (must be below 4294967295)"};
    id = static_cast<uint32_t>(v);
  } else {
    if (s.empty() || s[0] == '-' || s.find(':') != std::string::npos)
      return Error{std::string(option) + " " + s + ": not a " + kind + " id or name"};
    std::ifstream f(file);
    bool found = false;
    for (std::string line; std::getline(f, line);) {
      std::vector<std::string> fields;
      std::stringstream ss(line);
      for (std::string field; std::getline(ss, field, ':');) fields.push_back(field);
      if (fields.size() >= 3 && fields[0] == s) {
        char* end = nullptr;
        const unsigned long n = std::strtoul(fields[2].c_str(), &end, 10);
        if (end && *end == '\0' && n < 0xffffffffull) {
          id = static_cast<uint32_t>(n);
          found = true;
        }
        break;
      }
    }
    if (!found) return Error{std::string(option) + " " + s + ": no such " + kind + " in " + file};
  }
  if (id == 0)
    return Error{std::string(option) + " " + s + ": the VMM must not run as root (pick an unprivileged " + kind + ")"};
  return id;
}

struct BroughtFile {
  std::string jail_name;
  std::string host_path;  // absolute
  Fd fd;                  // O_RDONLY, validated
  bool executable = false;
  bool directory = false;  // a snapshot directory: always bound, never copied
};

struct Prepared {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<BroughtFile> files;  // [0]: the VMM binary
  std::vector<std::string> vmm_args;
  std::vector<std::string> outputs;  // what the VMM creates in the jail's /run
  std::string base, jails_dir, jail_dir, root;
  CgroupPlan cgroups;
  Fd netns;
  dev_t kvm_rdev = 0, tun_rdev = 0;
};

Result<dev_t> char_device(const char* path, const char* why) {
  struct stat st;
  if (::stat(path, &st) < 0) return errno_error(std::string(path) + " (" + why + ")");
  if (!S_ISCHR(st.st_mode)) return Error{std::string(path) + ": not a character device"};
  return st.st_rdev;
}

// A snapshot directory for `restore`: bound read-only into the jail as it is
// (copying would cost the shared page cache that makes restores cheap), so
// the VMM's uid must be able to search it and read each of its files.
Result<Fd> open_snapshot_dir(const std::string& abs, uid_t uid, gid_t gid) {
  EMBER_TRY(Fd dir, open_directory(abs, "snapshot directory"));
  struct stat st;
  if (::fstat(dir.get(), &st) < 0) return errno_error(abs);
  if (!executable_by(st, uid, gid))
    return Error{"snapshot directory " + abs + ": uid " + std::to_string(uid) + "/gid " + std::to_string(gid) +
                 " may not search it (it is bind-mounted into the jail as it is): change its mode"};
  for (const char* name : {kVmstateFile, kMemFile, kImageFile}) {
    const std::string shown = abs + "/" + name;
    if (::fstatat(dir.get(), name, &st, AT_SYMLINK_NOFOLLOW) < 0) return errno_error("snapshot directory: " + shown);
    if (!S_ISREG(st.st_mode)) return Error{"snapshot directory: " + shown + ": not a regular file"};
    if (!readable_by(st, uid, gid))
      return Error{"snapshot directory: " + shown + ": uid " + std::to_string(uid) + "/gid " + std::to_string(gid) +
                   " may not read it: change its mode"};
  }
  return dir;
}

// Step 1: everything is checked before anything is created.
Result<Prepared> validate(const JailerOptions& o) {
  Prepared p;
  EMBER_TRY(p.uid, resolve_id(o.uid, "--uid", "/etc/passwd", "user"));
  EMBER_TRY(p.gid, resolve_id(o.gid, "--gid", "/etc/group", "group"));

  // The files: the VMM binary, then what its arguments name.
  EMBER_TRY(std::string exec, absolute_path(o.exec_file, "--exec-file"));
  const std::string exec_name = basename_of(exec);
  {
    EMBER_TRY(Fd fd, open_regular_file(exec, "--exec-file"));
    struct stat st;
    if (::fstat(fd.get(), &st) < 0) return errno_error(exec);
    if (!(st.st_mode & 0111)) return Error{"--exec-file " + exec + ": not executable"};
  }
  EMBER_TRY(VmmInvocation inv, rewrite_vmm_args(o.vmm_args, o.id, dirname_of(exec) + "/ember-guest.elf",
                                                {exec_name, "dev", kJailRunDir}));
  p.vmm_args = inv.args;
  p.outputs = inv.outputs;
  std::vector<std::pair<std::string, std::string>> wanted = {{exec, exec_name}};
  std::vector<BroughtFile> dirs;
  for (const JailFile& f : inv.files) {
    const char* what = f.role == JailFile::Role::kKernel ? "guest kernel" :
                       f.role == JailFile::Role::kImage ? "image" :
                       f.role == JailFile::Role::kSnapshot ? "snapshot directory" : "program";
    EMBER_TRY(std::string abs, absolute_path(f.host_path, what));
    if (f.role == JailFile::Role::kSnapshot) {
      EMBER_TRY(Fd dir, open_snapshot_dir(abs, p.uid, p.gid));
      dirs.push_back(BroughtFile{f.jail_name, abs, std::move(dir), false, true});
      continue;
    }
    wanted.emplace_back(abs, f.jail_name);
  }
  for (size_t i = 0; i < wanted.size(); i++) {
    const char* what = i == 0 ? "--exec-file" : "VMM file";
    EMBER_TRY(Fd fd, open_regular_file(wanted[i].first, what));
    struct stat st;
    if (::fstat(fd.get(), &st) < 0) return errno_error(wanted[i].first);
    if (i == 0 && !(st.st_mode & 0111)) return Error{"--exec-file " + wanted[i].first + ": not executable"};
    if (!o.copy_files) {
      const bool ok = i == 0 ? executable_by(st, p.uid, p.gid) : readable_by(st, p.uid, p.gid);
      if (!ok)
        return Error{wanted[i].first + ": uid " + std::to_string(p.uid) + "/gid " + std::to_string(p.gid) +
                     " may not " + (i == 0 ? "execute" : "read") +
                     " it (it is bind-mounted into the jail as it is): change its mode, or pass --copy-files"};
    }
    p.files.push_back(BroughtFile{wanted[i].second, wanted[i].first, std::move(fd), i == 0});
  }
  for (BroughtFile& d : dirs) p.files.push_back(std::move(d));

  // Where the jail goes: below directories only root can change, and new.
  EMBER_TRY(p.base, absolute_path(o.chroot_base, "--chroot-base"));
  p.jails_dir = (p.base == "/" ? "" : p.base) + "/ember-vmm";
  p.jail_dir = p.jails_dir + "/" + o.id;
  p.root = p.jail_dir + "/root";
  {
    EMBER_TRY(DirWalk w, walk_dirs(p.jail_dir, true, "--chroot-base"));
    if (w.missing.empty())
      return Error{p.jail_dir + ": already exists (a jail with this id exists; `ember-jailer --cleanup --id " + o.id +
                   "` removes it)"};
  }

  EMBER_TRY(p.cgroups, plan_cgroups_here(o));
  for (const CgroupDir& d : p.cgroups.dirs) {
    struct stat st;
    if (::lstat(d.path.c_str(), &st) == 0)
      return Error{d.path + ": already exists (a jail with this id exists; `ember-jailer --cleanup --id " + o.id +
                   "` removes it)"};
  }

  if (!o.netns.empty()) {
    EMBER_TRY(std::string ns, absolute_path(o.netns, "--netns"));
    EMBER_TRY(p.netns, open_regular_file(ns, "--netns"));  // nsfs files are regular files
    if (::ioctl(p.netns.get(), NS_GET_NSTYPE) != CLONE_NEWNET)
      return Error{"--netns " + ns + ": not a network namespace (e.g. /var/run/netns/NAME from `ip netns add`)"};
  }
  EMBER_TRY(p.kvm_rdev, char_device("/dev/kvm", "ember-vmm needs KVM"));
  if (o.tun) {
    EMBER_TRY(p.tun_rdev, char_device("/dev/net/tun", "--tun"));
  }
  return p;
}

// What a failure leaves to undo: the jail directory and its cgroups.
struct Rollback {
  Fd jails_fd;  // CHROOT_BASE/ember-vmm
  std::string id, jail_dir;
  bool dir_created = false;
  std::vector<std::string> cgroups;

  void run() {
    for (auto it = cgroups.rbegin(); it != cgroups.rend(); ++it)
      if (auto r = remove_cgroup(*it); !r) print_line("cleaning up: " + r.message());
    if (dir_created)
      if (auto r = remove_tree(jails_fd.get(), id, jail_dir); !r) print_line("cleaning up: " + r.message());
  }
};

Result<void> copy_into(int from, int dir_fd, const std::string& name, mode_t mode, const std::string& shown) {
  Fd to(::openat(dir_fd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!to.valid()) return errno_error("create " + shown);
  struct stat st;
  if (::fstat(from, &st) < 0) return errno_error("stat " + shown);
  off_t in_off = 0;
  while (in_off < st.st_size) {  // in the kernel: sendfile works across file systems, copy_file_range not
    const ssize_t n = ::sendfile(to.get(), from, &in_off, static_cast<size_t>(st.st_size - in_off));
    if (n < 0) return errno_error("copy to " + shown);
    if (n == 0) break;
  }
  if (::fchmod(to.get(), mode) < 0) return errno_error("chmod " + shown);
  return Ok();
}

// Step 3: CHROOT_BASE/ember-vmm/ID/root, empty: the jail's root is a tmpfs
// mounted there in the jail's own mount namespace (step 6), holding the
// mount points of the files (or their copies) and dev/. The host keeps
// nothing of it but two directories and the record of the cgroups.
Result<Fd> build_jail_dir(const JailerOptions& o, const Prepared& p, Rollback* rb) {
  EMBER_TRY(Fd jails, make_dirs(p.jails_dir, 0755, "--chroot-base", nullptr));
  // make_dirs returns an O_PATH fd when nothing was missing: reopen.
  rb->jails_fd = Fd(::openat(jails.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!rb->jails_fd.valid()) return errno_error("open " + p.jails_dir);
  rb->id = o.id;
  rb->jail_dir = p.jail_dir;
  if (::mkdirat(rb->jails_fd.get(), o.id.c_str(), 0700) < 0) {
    if (errno == EEXIST) return Error{"mkdir " + p.jail_dir + ": already exists (another jailer with this id?)"};
    return errno_error("mkdir " + p.jail_dir);
  }
  rb->dir_created = true;
  Fd jail(::openat(rb->jails_fd.get(), o.id.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!jail.valid()) return errno_error("open " + p.jail_dir);
  if (::fchmod(jail.get(), 0700) < 0) return errno_error("chmod " + p.jail_dir);
  if (::mkdirat(jail.get(), "root", 0755) < 0) return errno_error("mkdir " + p.root);
  Fd root(::openat(jail.get(), "root", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!root.valid()) return errno_error("open " + p.root);
  if (::fchmod(root.get(), 0755) < 0) return errno_error("chmod " + p.root);
  if (!p.outputs.empty()) {  // the jail's /run: the one place the VMM may create files
    const std::string run = p.jail_dir + "/" + kJailRunDir;
    if (::mkdirat(jail.get(), kJailRunDir, 0700) < 0) return errno_error("mkdir " + run);
    if (::fchownat(jail.get(), kJailRunDir, p.uid, p.gid, AT_SYMLINK_NOFOLLOW) < 0) return errno_error("chown " + run);
  }
  return jail;
}

// --detach: where the caller finds the VMM it now owns (the jail directory
// is root's alone, so the pid can be trusted).
Result<void> write_pid_file(int jail_fd, const std::string& jail_dir, pid_t pid) {
  const std::string shown = jail_dir + "/" + kJailPidFile;
  Fd f(::openat(jail_fd, kJailPidFile, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!f.valid()) return errno_error("create " + shown);
  const std::string text = std::to_string(pid) + "\n";
  if (::write(f.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) return errno_error("write " + shown);
  return Ok();
}

// ---- the child: steps 4, 5 (joining), 6, 7, 8, then exec ----

[[noreturn]] void child_fail(int err_fd, int step, const std::string& message) {
  const std::string text = step_text(step, message);
  ssize_t r = ::write(err_fd, text.data(), text.size());
  (void)r;
  ::_exit(kExitJailFailed);
}

#define CHILD_CHECK(step, cond, what)                        \
  do {                                                       \
    if (!(cond)) child_fail(err_fd, step, errno_error(what).message); \
  } while (0)

// What the child gets: it reads them in run_jail's frame (shared memory).
struct ChildArgs {
  const JailerOptions* o;
  const Prepared* p;
  int err_fd, devnull;
  sigset_t old_mask;
  pid_t parent;
};

[[noreturn]] void child_main(const ChildArgs& args) {
  g_trace.mark("child");
  const JailerOptions& o = *args.o;
  const Prepared& p = *args.p;
  const int err_fd = args.err_fd;
  // 4. network namespace (without --netns a new, empty one: the VMM needs
  // none, and the host's abstract Unix sockets live in the host's), rlimits
  if (p.netns.valid()) CHILD_CHECK(4, ::setns(p.netns.get(), CLONE_NEWNET) == 0, "setns " + o.netns);
  else CHILD_CHECK(4, ::unshare(CLONE_NEWNET) == 0, "unshare(CLONE_NEWNET)");
  const rlimit nofile{o.rlimit_nofile, o.rlimit_nofile};
  CHILD_CHECK(4, ::setrlimit(RLIMIT_NOFILE, &nofile) == 0, "setrlimit no-file");
  if (o.rlimit_fsize) {
    const rlimit fsize{*o.rlimit_fsize, *o.rlimit_fsize};
    CHILD_CHECK(4, ::setrlimit(RLIMIT_FSIZE, &fsize) == 0, "setrlimit fsize");
  }
  // 5. the cgroups: v2, this process was created in its cgroup (clone3
  // CLONE_INTO_CGROUP); v1, it moves itself into each through "tasks", as
  // "0": a thread moving itself is the one move that skips the global
  // thread-group lock (whose RCU grace period costs 1-15 ms here); moving
  // another pid or a cgroup.procs write takes it.
  if (p.cgroups.version == 1)
    for (const CgroupDir& d : p.cgroups.dirs) {
      const std::string tasks = d.path + "/tasks";
      Fd f(::open(tasks.c_str(), O_WRONLY | O_CLOEXEC));
      CHILD_CHECK(5, f.valid() && ::write(f.get(), "0", 1) == 1, "join " + tasks);
    }
  g_trace.mark("joined");

  // 6. mount namespace and the new root. Each file is brought in as a
  // detached read-only clone of the mount of exactly the fd validated in
  // step 1 (open_tree: no second path lookup), made before the new namespace
  // exists and attached inside it.
  std::vector<Fd> trees;
  for (const BroughtFile& f : p.files) {
    if (o.copy_files && !f.directory) continue;
    Fd tree(::open_tree(f.fd.get(), "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH));
    CHILD_CHECK(6, tree.valid(), "open_tree " + f.host_path);
    mount_attr attr{};
    attr.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (f.executable ? 0 : MOUNT_ATTR_NOEXEC);
    CHILD_CHECK(6, ::mount_setattr(tree.get(), "", AT_EMPTY_PATH, &attr, sizeof attr) == 0,
                "make the bind mount of " + f.host_path + " read-only");
    trees.push_back(std::move(tree));
  }
  g_trace.mark("child_trees");
  CHILD_CHECK(6, ::unshare(CLONE_NEWNS | CLONE_NEWIPC) == 0, "unshare(CLONE_NEWNS | CLONE_NEWIPC)");
  g_trace.mark("unshare_mnt");
  CHILD_CHECK(6, ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0, "make / private");
  // The new root: a small tmpfs on the jail directory (a mount point, as
  // pivot_root needs; in memory, so building it writes nothing to the host's
  // file system; charged to the jail's memory cgroup).
  uint64_t tmpfs_bytes = 64 * 1024;
  if (o.copy_files)
    for (const BroughtFile& f : p.files) {
      struct stat st;
      if (::fstat(f.fd.get(), &st) == 0) tmpfs_bytes += (static_cast<uint64_t>(st.st_size) + 4095) & ~uint64_t{4095};
    }
  const std::string tmpfs_opts = "mode=0755,nr_inodes=32,size=" + std::to_string(tmpfs_bytes);
  CHILD_CHECK(6, ::mount("ember-jail", p.root.c_str(), "tmpfs", MS_NOSUID, tmpfs_opts.c_str()) == 0,
              "mount a tmpfs on " + p.root);
  CHILD_CHECK(6, ::chdir(p.root.c_str()) == 0, "chdir " + p.root);
  for (const BroughtFile& f : p.files) {
    const std::string shown = p.root + "/" + f.jail_name;
    const mode_t mode = f.executable ? 0555 : 0444;
    if (f.directory) {
      CHILD_CHECK(6, ::mkdir(f.jail_name.c_str(), 0555) == 0, "create the mount point " + shown);
    } else if (o.copy_files) {
      if (auto r = copy_into(f.fd.get(), AT_FDCWD, f.jail_name, mode, shown); !r) child_fail(err_fd, 6, r.message());
    } else {
      Fd target(::open(f.jail_name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
      CHILD_CHECK(6, target.valid(), "create the mount point " + shown);
    }
  }
  CHILD_CHECK(6, ::mkdir("dev", 0755) == 0, "mkdir " + p.root + "/dev");
  CHILD_CHECK(6, ::mknod("dev/kvm", S_IFCHR | 0600, p.kvm_rdev) == 0, "mknod " + p.root + "/dev/kvm");
  CHILD_CHECK(6, ::lchown("dev/kvm", p.uid, p.gid) == 0, "chown " + p.root + "/dev/kvm");
  if (o.tun) {
    CHILD_CHECK(6, ::mkdir("dev/net", 0755) == 0, "mkdir " + p.root + "/dev/net");
    CHILD_CHECK(6, ::mknod("dev/net/tun", S_IFCHR | 0600, p.tun_rdev) == 0, "mknod " + p.root + "/dev/net/tun");
    CHILD_CHECK(6, ::lchown("dev/net/tun", p.uid, p.gid) == 0, "chown " + p.root + "/dev/net/tun");
  }
  // trees[] holds the bound files in p.files order (copies skipped).
  for (size_t i = 0, t = 0; i < p.files.size(); i++) {
    const BroughtFile& f = p.files[i];
    if (o.copy_files && !f.directory) continue;
    CHILD_CHECK(6, ::move_mount(trees[t++].get(), "", AT_FDCWD, f.jail_name.c_str(), MOVE_MOUNT_F_EMPTY_PATH) == 0,
                "bind " + f.host_path + " on " + p.root + "/" + f.jail_name);
  }
  if (!p.outputs.empty()) {
    const std::string run = p.jail_dir + "/" + kJailRunDir;
    CHILD_CHECK(6, ::mkdir(kJailRunDir, 0755) == 0, "create the mount point " + p.root + "/" + kJailRunDir);
    CHILD_CHECK(6, ::mount(run.c_str(), kJailRunDir, nullptr, MS_BIND, nullptr) == 0,
                "bind " + run + " on " + p.root + "/" + kJailRunDir);
    CHILD_CHECK(6, ::mount(nullptr, kJailRunDir, nullptr, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                           nullptr) == 0,
                "make " + p.root + "/" + kJailRunDir + " nosuid, nodev, noexec");
  }
  g_trace.mark("mounts");
  CHILD_CHECK(6, ::syscall(SYS_pivot_root, ".", ".") == 0, "pivot_root " + p.root);
  g_trace.mark("pivot_root");
  CHILD_CHECK(6, ::umount2(".", MNT_DETACH) == 0, "unmount the old root");
  g_trace.mark("umount_old_root");
  CHILD_CHECK(6, ::chdir("/") == 0, "chdir /");
  CHILD_CHECK(6, ::chroot(".") == 0, "chroot");
  CHILD_CHECK(6, ::mount(nullptr, "/", nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | (o.copy_files ? 0 : MS_NOEXEC),
                         nullptr) == 0,
              "remount the jail's root read-only");

  // 7. PID namespace (made by the parent) and daemon
  if (o.daemonize) {
    CHILD_CHECK(7, ::setsid() >= 0, "setsid");
    for (int fd = 0; fd < 3; fd++) CHILD_CHECK(7, ::dup2(args.devnull, fd) == fd, "redirect stdio to /dev/null");
  }

  g_trace.mark("root_ro");
  // 8. no capabilities, unprivileged ids, no new privileges, exec
  for (int cap = 0; cap <= 63; cap++)
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
      if (errno == EINVAL) break;  // past the kernel's last capability
      child_fail(err_fd, 8, errno_error("drop capability " + std::to_string(cap) + " from the bounding set").message);
    }
  CHILD_CHECK(8, ::setgroups(0, nullptr) == 0, "setgroups(0)");
  CHILD_CHECK(8, ::setresgid(p.gid, p.gid, p.gid) == 0, "setresgid " + std::to_string(p.gid));
  CHILD_CHECK(8, ::setresuid(p.uid, p.uid, p.uid) == 0, "setresuid " + std::to_string(p.uid));
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct caps[2] = {};
  CHILD_CHECK(8, ::syscall(SYS_capset, &hdr, caps) == 0, "capset (none)");
  CHILD_CHECK(8, ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "prctl(PR_SET_NO_NEW_PRIVS)");
  if (::getuid() != p.uid || ::geteuid() != p.uid || ::getgid() != p.gid || ::getegid() != p.gid)
    child_fail(err_fd, 8, "the uid/gid did not change");
  if (!o.daemonize && !o.detach) {
    // The VMM dies with its supervisor (set after the uid change, which clears it).
    CHILD_CHECK(8, ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) == 0, "prctl(PR_SET_PDEATHSIG)");
    if (!o.new_pid_ns && ::getppid() != args.parent) child_fail(err_fd, 8, "ember-jailer exited before the VMM started");
  }
  for (int sig = 1; sig < 32; sig++)
    if (sig != SIGKILL && sig != SIGSTOP) ::signal(sig, SIG_DFL);
  ::sigprocmask(SIG_SETMASK, &args.old_mask, nullptr);

  const std::string exec = "/" + p.files[0].jail_name;
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(exec.c_str()));
  for (const std::string& a : p.vmm_args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  char* envp[] = {nullptr};
  g_trace.mark("exec");
  if (g_trace.on) {
    const std::string line = "ember-jailer-trace:" + g_trace.line + "\n";
    ssize_t r = ::write(2, line.data(), line.size());
    (void)r;
  }
  ::execve(exec.c_str(), argv.data(), envp);
  child_fail(err_fd, 8, errno_error("exec " + exec + " in the jail").message);
}

void child_entry(void* arg) { child_main(*static_cast<const ChildArgs*>(arg)); }

std::string signal_text(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  return abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
}

// Waits for the VMM, forwarding termination signals, and turns how it ended
// into ember-jailer's status (and a line on stderr when it was killed).
int supervise(pid_t child, const sigset_t& waited, const CgroupPlan& plan, const std::string& id) {
  int ws = 0;
  for (;;) {
    siginfo_t si{};
    const int sig = ::sigwaitinfo(&waited, &si);
    if (sig < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (sig == SIGCHLD) {
      const pid_t r = ::waitpid(child, &ws, WNOHANG);
      if (r == child) break;
      continue;
    }
    ::kill(child, sig);
  }
  if (WIFEXITED(ws)) return WEXITSTATUS(ws);
  if (!WIFSIGNALED(ws)) return kExitJailFailed;
  const int sig = WTERMSIG(ws);
  const std::string who = "ember-vmm (pid " + std::to_string(child) + ", jail " + id + ")";
  const long ooms = oom_kills(memory_dir(plan));
  if (sig == SIGKILL && ooms > 0) {
    const std::string limit = memory_limit_text(plan);
    print_line(who + " was killed by the kernel's OOM killer: the VM reached the jail's memory limit" +
               (limit.empty() ? "" : " (" + limit + ")") + "; give it more with --cgroup or the guest less with --mem-mib");
  } else if (sig == SIGSYS) {
    print_line(who + " was killed by seccomp (SIGSYS): it made a system call outside its allow-list "
               "(seccomp/seccomp_filters.cc); the kernel log names it: dmesg | grep 'type=1326'");
  } else {
    print_line(who + " was killed by " + signal_text(sig));
  }
  return 128 + sig;
}

}  // namespace

int run_jail(const JailerOptions& o, uint64_t t0_ns) {
  const char* trace = std::getenv("EMBER_JAILER_TRACE");
  g_trace.on = trace && *trace && std::strcmp(trace, "0") != 0;
  g_trace.t0 = t0_ns ? t0_ns : monotonic_ns();
  g_trace.mark("run_jail");
  // 2 (first, before anything is opened): no inherited fd survives, no
  // inherited environment variable reaches the VMM.
  if (::syscall(SYS_close_range, 3, ~0u, 0) < 0) {
    print_line(step_text(2, errno_error("close_range").message));
    return kExitJailFailed;
  }
  ::clearenv();
  if (::geteuid() != 0) {
    print_line(step_text(1, "must run as root: it creates namespaces, cgroups and device nodes, then drops to --uid/--gid"));
    return kExitJailFailed;
  }
  ::signal(SIGCHLD, SIG_DFL);  // an inherited SIG_IGN would make the VMM's status vanish

  // 1
  auto prepared = validate(o);
  if (!prepared) {
    print_line(step_text(1, prepared.message()));
    return kExitJailFailed;
  }
  Prepared& p = *prepared;

  // 3 and 5 here; then the child (sharing this process's memory until it
  // execs: vfork_spawn.h) does 4, 6, 7 and 8 while this process waits.
  Rollback rb;
  auto fail = [&](int step, const std::string& message) {
    rb.run();
    print_line(step_text(step, message));
    return kExitJailFailed;
  };
  g_trace.mark("validated");
  auto jail = build_jail_dir(o, p, &rb);
  if (!jail) return fail(3, jail.message());
  g_trace.mark("jail_dir");
  auto procs = create_cgroups(p.cgroups, &rb.cgroups);
  if (!procs) return fail(5, procs.message());
  g_trace.mark("cgroups");
  if (auto r = write_cgroup_record(jail->get(), p.jail_dir, rb.cgroups); !r) return fail(5, r.message());
  g_trace.mark("record");

  Fd devnull;
  if (o.daemonize) {
    devnull = Fd(::open("/dev/null", O_RDWR | O_CLOEXEC));
    if (!devnull.valid()) return fail(7, errno_error("open /dev/null").message);
  }
  int err_pipe[2];
  if (::pipe2(err_pipe, O_CLOEXEC) < 0) return fail(6, errno_error("pipe").message);
  Fd err_read(err_pipe[0]), err_write(err_pipe[1]);
  if (o.new_pid_ns && ::unshare(CLONE_NEWPID) < 0) return fail(7, errno_error("unshare(CLONE_NEWPID)").message);

  sigset_t waited;
  ChildArgs args{&o, &p, err_write.get(), devnull.get(), {}, ::getpid()};
  sigemptyset(&waited);
  for (int s : {SIGCHLD, SIGINT, SIGTERM, SIGHUP, SIGQUIT}) sigaddset(&waited, s);
  ::sigprocmask(SIG_BLOCK, &waited, &args.old_mask);
  // v2: the child starts in its cgroup (the first directory of the plan).
  const bool into_cgroup = p.cgroups.version == 2 && !procs->empty();
  g_trace.mark("spawn");
  alignas(16) char child_stack[64 * 1024];  // this frame outlives the child's use of it (CLONE_VFORK)
  const pid_t child = spawn_sharing_memory(child_entry, &args, child_stack, sizeof child_stack,
                                           into_cgroup ? (*procs)[0].get() : -1, o.detach);
  if (child < 0)
    return fail(5, errno_error(into_cgroup ? "clone3 into " + p.cgroups.dirs[0].path : "clone3").message);

  // Here the child has exec'd ember-vmm or failed: a failure left its words
  // in the pipe (whose other end closes on exec or exit).
  err_write.reset();
  const std::string child_error = read_fd(err_read.get());
  if (!child_error.empty()) {
    if (!o.detach) ::waitpid(child, nullptr, 0);  // gone before its cgroups are removed (detached: not ours to reap)
    rb.run();
    print_line(child_error);
    return kExitJailFailed;
  }
  if (o.detach) {  // the VMM is the caller's now: say which it is and go
    if (auto r = write_pid_file(jail->get(), p.jail_dir, child); !r) {
      ::kill(child, SIGKILL);
      return fail(8, r.message());
    }
    return 0;
  }
  // From here on the jail is the VMM's: it stays until --cleanup. What
  // set-up opened is not needed to supervise; each open file would pin
  // kernel memory for as long as the VM lives.
  p.files.clear();
  p.netns.reset();
  procs->clear();
  jail->reset();
  rb.jails_fd.reset();
  err_read.reset();
  devnull.reset();
  if (o.daemonize) {
    const std::string line = std::to_string(child) + "\n";
    ssize_t r = ::write(1, line.data(), line.size());
    (void)r;
    return 0;
  }
  return supervise(child, waited, p.cgroups, o.id);
}

int run_cleanup(const JailerOptions& o) {
  ::syscall(SYS_close_range, 3, ~0u, 0);
  ::clearenv();
  if (::geteuid() != 0) {
    print_line("cleanup: must run as root");
    return kExitJailFailed;
  }
  auto base = absolute_path(o.chroot_base, "--chroot-base");
  if (!base) {
    print_line("cleanup: " + base.message());
    return kExitJailFailed;
  }
  const std::string jails_dir = (*base == "/" ? "" : *base) + "/ember-vmm";
  const std::string jail_dir = jails_dir + "/" + o.id;
  auto walk = walk_dirs(jails_dir, true, "--chroot-base");
  if (!walk) {
    print_line("cleanup: " + walk.message());
    return kExitJailFailed;
  }
  bool jail_exists = false;
  std::vector<std::string> cgroup_dirs;
  if (walk->missing.empty()) {
    Fd jails(::openat(walk->deepest.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    struct stat st;
    if (jails.valid() && ::fstatat(jails.get(), o.id.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      jail_exists = true;
      // The record of the jail's cgroups, written when it was built.
      Fd jail(::openat(jails.get(), o.id.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      for (const std::string& line : jail.valid() ? read_cgroup_record(jail.get()) : std::vector<std::string>{}) {
        if (!is_cgroup_dir_of(line, o.id)) {
          print_line("cleanup: the record of " + jail_dir + " names " + line + ", not a cgroup of this jail: ignored");
          continue;
        }
        cgroup_dirs.push_back(line);
      }
    }
  }
  for (const std::string& d : candidate_cgroup_dirs(o)) {
    struct stat st;
    if (::lstat(d.c_str(), &st) == 0 && S_ISDIR(st.st_mode) &&
        std::find(cgroup_dirs.begin(), cgroup_dirs.end(), d) == cgroup_dirs.end())
      cgroup_dirs.push_back(d);
  }
  if (!jail_exists && cgroup_dirs.empty()) {
    print_line("cleanup: nothing to clean up for id " + o.id + " (no " + jail_dir + ", no cgroup ember/" + o.id + ")");
    return 0;
  }
  int status = 0;
  for (const std::string& d : cgroup_dirs)
    if (auto r = remove_cgroup(d); !r) {
      print_line("cleanup: " + r.message());
      status = kExitJailFailed;
    }
  if (jail_exists) {
    Fd jails(::openat(walk->deepest.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    auto r = jails.valid() ? remove_tree(jails.get(), o.id, jail_dir) : Result<void>(errno_error("open " + jails_dir));
    if (!r) {
      print_line("cleanup: " + r.message());
      status = kExitJailFailed;
    }
  }
  return status;
}

}  // namespace ember::jail
