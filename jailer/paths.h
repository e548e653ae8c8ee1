// Path handling for a program that runs as root on behalf of others: every
// path is walked one component at a time from "/" with O_NOFOLLOW, so that a
// symlink anywhere is refused (and named), never followed; directories the
// jail is built in must be ones only root can change; trees are removed
// through directory fds without following symlinks or crossing mounts.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"

namespace ember::jail {

// An absolute path with "." and empty components dropped ("a//b/./c" ->
// "/cwd/a/b/c"); relative paths are taken from the current directory.
// Refuses "" and any ".." (the walk below could not vouch for it).
Result<std::string> absolute_path(const std::string& path, const std::string& what);
std::vector<std::string> path_components(const std::string& absolute);  // "/a/b" -> {"a", "b"}
std::string dirname_of(const std::string& absolute);                       // "/a/b" -> "/a"; "/a" -> "/"
std::string basename_of(const std::string& path);                         // "/a/b" -> "b"

// Opens an existing regular file for reading: no symlink in any component,
// the last one must be a regular file. `what` names it in errors
// ("--exec-file /x/ember-vmm: ...").
Result<Fd> open_regular_file(const std::string& absolute, const std::string& what);

// Opens an existing directory for reading, with the same rule: no symlink in
// any component.
Result<Fd> open_directory(const std::string& absolute, const std::string& what);

// What walking a directory path found: the deepest existing directory and
// the components below it that do not exist yet.
struct DirWalk {
  Fd deepest;                    // O_PATH|O_DIRECTORY fd
  std::string deepest_path;
  std::vector<std::string> missing;
};
// Walks `absolute` as far as it exists. Every existing component must be a
// directory, not a symlink; with `trusted`, also owned by root and not
// writable by group or others unless sticky (so nobody but root can swap
// what is below it while the jailer works).
Result<DirWalk> walk_dirs(const std::string& absolute, bool trusted, const std::string& what);

// walk_dirs, then creates what is missing (mode, owned by root); `created`
// gets the absolute paths it made, outermost first. Returns an O_PATH fd.
Result<Fd> make_dirs(const std::string& absolute, mode_t mode, const std::string& what,
                     std::vector<std::string>* created);

// Removes `name` (a file, or a directory and everything below it) inside
// `parent_fd`, without following symlinks and without crossing into other
// mounts. `display` is the absolute path, for errors. A missing `name` is not
// an error.
Result<void> remove_tree(int parent_fd, const std::string& name, const std::string& display);

// Whether `uid`/`gid` (no supplementary groups) may read (and execute) a
// file with this stat, by its mode bits.
bool readable_by(const struct stat& st, uid_t uid, gid_t gid);
bool executable_by(const struct stat& st, uid_t uid, gid_t gid);

}  // namespace ember::jail
