// Files in emberd's state directory: atomic replacement (write a temporary,
// fsync, rename, fsync the directory), bounded reads, directory trees.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace ember::controller {

// Writes `data` to PATH.tmp.<pid>, fsyncs it, renames it over `path` and
// fsyncs the directory: a reader (or a restart after a crash) sees the old
// file or the new one, never a mix.
Result<void> write_file_atomic(const std::string& path, std::string_view data, uint32_t mode = 0644);

// Fsyncs a file or directory by path.
Result<void> fsync_path(const std::string& path);

// Reads a whole file; fails if it is larger than `max_bytes`.
Result<std::string> read_file(const std::string& path, uint64_t max_bytes);

// mkdir -p with `mode` for the directories it creates.
Result<void> make_dirs(const std::string& path, uint32_t mode = 0755);

// rm -rf; errors are ignored except that the function reports whether the
// path is gone afterwards.
bool remove_tree(const std::string& path);

bool path_exists(const std::string& path);

// Bytes used on disk (allocated blocks) by a file or a tree: sparse files count
// what they really take.
uint64_t disk_usage(const std::string& path);

// Copies the regular files `names` from the directory `from` into a new
// directory `to` (which must not exist; made as to.tmp.<pid>, then renamed),
// keeping holes, owned by this process's user, files 0644. `from` is
// untrusted (a jailed VMM wrote it): symlinks anywhere, anything but a plain
// regular file with one link, and more than `max_bytes` in all are refused;
// the copies are new inodes that no other process holds open.
Result<void> copy_untrusted_files(const std::string& from, const std::string& to, const std::vector<std::string>& names,
                                  uint64_t max_bytes);

// Directory of the running executable ("/usr/bin" for /usr/bin/emberd).

}  // namespace ember::controller
