#include "jailer/paths.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>

#include "jailer/plain_text.h"

namespace ember::jail {

namespace {

std::string mode_text(mode_t m) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(m & 07777));
  return buf;
}

std::string join_path(const std::string& dir, const std::string& name) {
  return dir == "/" ? "/" + name : dir + "/" + name;
}

}  // namespace

Result<std::string> absolute_path(const std::string& path, const std::string& what) {
  if (path.empty()) return Error{what + ": empty path"};
  if (path.find('\0') != std::string::npos) return Error{what + ": NUL byte in path"};
  std::string full = path;
  if (path[0] != '/') {
    char cwd[PATH_MAX];
    if (!::getcwd(cwd, sizeof cwd)) return errno_error(what + " " + path + ": getcwd");
    full = std::string(cwd) + "/" + path;
  }
  std::string out;
  for (const std::string& comp : path_components(full)) {
    if (comp == ".") continue;
    if (comp == "..")
      return Error{what + " " + path + ": '..' is not allowed in paths given to ember-jailer (pass the path without it)"};
    out += "/" + comp;
  }
  return out.empty() ? std::string("/") : out;
}

std::vector<std::string> path_components(const std::string& absolute) { return split_nonempty(absolute, '/'); }

std::string dirname_of(const std::string& absolute) {
  const auto slash = absolute.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return absolute.substr(0, slash);
}

std::string basename_of(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

Result<DirWalk> walk_dirs(const std::string& absolute, bool trusted, const std::string& what) {
  DirWalk w;
  w.deepest = Fd(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!w.deepest.valid()) return errno_error("open /");
  w.deepest_path = "/";
  const auto comps = path_components(absolute);
  auto check = [&](int fd, const std::string& shown) -> Result<void> {
    struct stat st;
    if (::fstat(fd, &st) < 0) return errno_error(what + ": stat " + shown);
    if (!S_ISDIR(st.st_mode)) return Error{what + ": " + shown + " is not a directory"};
    if (trusted) {
      if (st.st_uid != 0)
        return Error{what + ": " + shown + " is owned by uid " + std::to_string(st.st_uid) +
                     ", not root: its owner could swap the jail while ember-jailer builds it"};
      if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX))
        return Error{what + ": " + shown + " is writable by group or others (mode " + mode_text(st.st_mode) +
                     ") and not sticky: someone else could swap the jail while ember-jailer builds it"};
    }
    return Ok();
  };
  EMBER_TRY_VOID(check(w.deepest.get(), "/"));
  for (size_t i = 0; i < comps.size(); i++) {
    const std::string shown = join_path(w.deepest_path, comps[i]);
    Fd next(::openat(w.deepest.get(), comps[i].c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!next.valid()) {
      if (errno == ENOENT) {
        w.missing.assign(comps.begin() + static_cast<std::ptrdiff_t>(i), comps.end());
        return w;
      }
      return errno_error(what + ": " + shown);
    }
    struct stat st;
    if (::fstat(next.get(), &st) < 0) return errno_error(what + ": stat " + shown);
    if (S_ISLNK(st.st_mode))
      return Error{what + ": " + shown + " is a symlink; ember-jailer never follows symlinks (pass the real path)"};
    EMBER_TRY_VOID(check(next.get(), shown));
    w.deepest = std::move(next);
    w.deepest_path = shown;
  }
  return w;
}

Result<Fd> make_dirs(const std::string& absolute, mode_t mode, const std::string& what,
                     std::vector<std::string>* created) {
  EMBER_TRY(DirWalk w, walk_dirs(absolute, true, what));
  Fd dir = std::move(w.deepest);
  std::string path = w.deepest_path;
  for (const std::string& comp : w.missing) {
    const std::string shown = join_path(path, comp);
    if (::mkdirat(dir.get(), comp.c_str(), mode) < 0) return errno_error(what + ": mkdir " + shown);
    if (created) created->push_back(shown);
    Fd next(::openat(dir.get(), comp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!next.valid()) return errno_error(what + ": open " + shown);
    if (::fchmod(next.get(), mode) < 0) return errno_error(what + ": chmod " + shown);  // not the umask's choice
    dir = std::move(next);
    path = shown;
  }
  return dir;
}

namespace {

// openat2 with RESOLVE_NO_SYMLINKS: the kernel refuses a symlink anywhere in
// the path in one call (Linux 5.6). -1 with errno set on any failure.
int open_no_symlinks(const std::string& absolute, int flags) {
  open_how how{};
  how.flags = static_cast<uint64_t>(flags) | O_NOFOLLOW | O_CLOEXEC;
  how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  return static_cast<int>(::syscall(SYS_openat2, AT_FDCWD, absolute.c_str(), &how, sizeof how));
}

}  // namespace

Result<Fd> open_regular_file(const std::string& absolute, const std::string& what) {
  if (absolute == "/") return Error{what + " /: not a regular file"};
  // The fast way: two lookups by the kernel, no symlink followed. Anything
  // unusual (a symlink, a missing component, no openat2) takes the walk
  // below, which names the component at fault.
  {
    Fd path_fd(open_no_symlinks(absolute, O_PATH));
    struct stat st, st2;
    if (path_fd.valid() && ::fstat(path_fd.get(), &st) == 0 && S_ISREG(st.st_mode)) {
      Fd fd(open_no_symlinks(absolute, O_RDONLY | O_NONBLOCK));
      if (fd.valid() && ::fstat(fd.get(), &st2) == 0 && st2.st_dev == st.st_dev && st2.st_ino == st.st_ino) return fd;
    }
  }
  EMBER_TRY(DirWalk w, walk_dirs(dirname_of(absolute), false, what + " " + absolute));
  if (!w.missing.empty())
    return Error{what + " " + absolute + ": " + join_path(w.deepest_path, w.missing[0]) + ": No such file or directory"};
  const std::string name = basename_of(absolute);
  Fd path_fd(::openat(w.deepest.get(), name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!path_fd.valid()) return errno_error(what + " " + absolute);
  struct stat st;
  if (::fstat(path_fd.get(), &st) < 0) return errno_error(what + " " + absolute);
  if (S_ISLNK(st.st_mode))
    return Error{what + " " + absolute + ": is a symlink; ember-jailer never follows symlinks (pass the real path)"};
  if (!S_ISREG(st.st_mode)) return Error{what + " " + absolute + ": not a regular file"};
  // Reopen for reading (O_PATH fds cannot be read), and check that it is
  // still the same file.
  Fd fd(::openat(w.deepest.get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) return errno_error(what + " " + absolute);
  struct stat st2;
  if (::fstat(fd.get(), &st2) < 0) return errno_error(what + " " + absolute);
  if (st2.st_dev != st.st_dev || st2.st_ino != st.st_ino)
    return Error{what + " " + absolute + ": changed while it was being opened"};
  return fd;
}

Result<Fd> open_directory(const std::string& absolute, const std::string& what) {
  EMBER_TRY(DirWalk w, walk_dirs(absolute, false, what + " " + absolute));
  if (!w.missing.empty())
    return Error{what + " " + absolute + ": " + join_path(w.deepest_path, w.missing[0]) + ": No such file or directory"};
  Fd fd(::openat(w.deepest.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return errno_error(what + " " + absolute);
  return fd;
}

Result<void> remove_tree(int parent_fd, const std::string& name, const std::string& display) {
  struct stat st;
  if (::fstatat(parent_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
    if (errno == ENOENT) return Ok();
    return errno_error("stat " + display);
  }
  if (!S_ISDIR(st.st_mode)) {
    if (::unlinkat(parent_fd, name.c_str(), 0) < 0 && errno != ENOENT) return errno_error("unlink " + display);
    return Ok();
  }
  struct stat parent_st;
  if (::fstat(parent_fd, &parent_st) < 0) return errno_error("stat " + dirname_of(display));
  if (parent_st.st_dev != st.st_dev)
    return Error{"remove " + display + ": a mount point (refusing to remove anything on another file system)"};
  {
    Fd dir(::openat(parent_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!dir.valid()) return errno_error("open " + display);
    const int dup_fd = ::fcntl(dir.get(), F_DUPFD_CLOEXEC, 0);
    if (dup_fd < 0) return errno_error("dup " + display);
    DIR* d = ::fdopendir(dup_fd);
    if (!d) {
      ::close(dup_fd);
      return errno_error("opendir " + display);
    }
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    ::closedir(d);
    for (const std::string& n : names) EMBER_TRY_VOID(remove_tree(dir.get(), n, display + "/" + n));
  }
  if (::unlinkat(parent_fd, name.c_str(), AT_REMOVEDIR) < 0 && errno != ENOENT) return errno_error("rmdir " + display);
  return Ok();
}

namespace {

bool mode_allows(const struct stat& st, uid_t uid, gid_t gid, mode_t owner_bit, mode_t group_bit, mode_t other_bit) {
  if (st.st_uid == uid) return st.st_mode & owner_bit;
  if (st.st_gid == gid) return st.st_mode & group_bit;
  return st.st_mode & other_bit;
}

}  // namespace

bool readable_by(const struct stat& st, uid_t uid, gid_t gid) {
  return mode_allows(st, uid, gid, S_IRUSR, S_IRGRP, S_IROTH);
}

bool executable_by(const struct stat& st, uid_t uid, gid_t gid) {
  return readable_by(st, uid, gid) && mode_allows(st, uid, gid, S_IXUSR, S_IXGRP, S_IXOTH);
}

}  // namespace ember::jail
