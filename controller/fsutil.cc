#include "controller/fsutil.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <vector>
#include <system_error>

#include "base/fd.h"

namespace ember::controller {

namespace fs = std::filesystem;

Result<void> fsync_path(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return errno_error("open " + path);
  if (::fsync(fd.get()) < 0) return errno_error("fsync " + path);
  return Ok();
}

Result<void> write_file_atomic(const std::string& path, std::string_view data, uint32_t mode) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
    if (!fd.valid()) return errno_error("create " + tmp);
    size_t off = 0;
    while (off < data.size()) {
      const ssize_t w = ::write(fd.get(), data.data() + off, data.size() - off);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        const int e = errno;
        ::unlink(tmp.c_str());
        return errno_error("write " + tmp, e);
      }
      off += static_cast<size_t>(w);
    }
    if (::fsync(fd.get()) < 0) {
      const int e = errno;
      ::unlink(tmp.c_str());
      return errno_error("fsync " + tmp, e);
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) < 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    return errno_error("rename " + tmp + " to " + path, e);
  }
  const auto slash = path.rfind('/');
  return fsync_path(slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash)));
}

Result<std::string> read_file(const std::string& path, uint64_t max_bytes) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return errno_error("open " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) < 0) return errno_error("stat " + path);
  if (static_cast<uint64_t>(st.st_size) > max_bytes)
    return Error{path + ": " + std::to_string(st.st_size) + " bytes, more than the " + std::to_string(max_bytes) +
                 " allowed"};
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("read " + path);
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_bytes) return Error{path + ": larger than the " + std::to_string(max_bytes) + " bytes allowed"};
  }
  return out;
}

Result<void> make_dirs(const std::string& path, uint32_t mode) {
  std::string cur;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t next = path.find('/', pos);
    if (next == std::string::npos) next = path.size();
    cur = path.substr(0, next);
    pos = next + 1;
    if (cur.empty()) continue;
    if (::mkdir(cur.c_str(), mode) < 0 && errno != EEXIST) return errno_error("mkdir " + cur);
  }
  struct stat st;
  if (::stat(path.c_str(), &st) < 0) return errno_error("stat " + path);
  if (!S_ISDIR(st.st_mode)) return Error{path + ": exists and is not a directory"};
  return Ok();
}

bool remove_tree(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  return !fs::exists(fs::symlink_status(path, ec));
}

bool path_exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

uint64_t disk_usage(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) < 0) return 0;
  uint64_t total = static_cast<uint64_t>(st.st_blocks) * 512;
  if (S_ISDIR(st.st_mode)) {
    std::error_code ec;
    for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec))
      total += disk_usage(it->path().string());
  }
  return total;
}

namespace {

// Copies `size` bytes of `in` to `out` (empty, same size afterwards) data
// extent by data extent, so that holes stay holes.
Result<void> copy_sparse(int in, int out, uint64_t size, const std::string& shown) {
  std::vector<char> buf(1 << 20);
  off_t pos = 0;
  while (static_cast<uint64_t>(pos) < size) {
    off_t data = ::lseek(in, pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only a hole is left
      return errno_error("seek in " + shown);
    }
    off_t hole = ::lseek(in, data, SEEK_HOLE);
    if (hole < 0) return errno_error("seek in " + shown);
    if (static_cast<uint64_t>(hole) > size) hole = static_cast<off_t>(size);
    for (off_t off = data; off < hole;) {
      const size_t want = static_cast<size_t>(std::min<off_t>(hole - off, static_cast<off_t>(buf.size())));
      const ssize_t n = ::pread(in, buf.data(), want, off);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errno_error("read " + shown);
      if (n == 0) return Error{"read " + shown + ": it shrank while being copied"};
      for (ssize_t done = 0; done < n;) {
        const ssize_t w = ::pwrite(out, buf.data() + done, static_cast<size_t>(n - done), off + done);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return errno_error("write the copy of " + shown);
        done += w;
      }
      off += n;
    }
    pos = hole;
  }
  if (::ftruncate(out, static_cast<off_t>(size)) < 0) return errno_error("size the copy of " + shown);
  return Ok();
}

}  // namespace

Result<void> copy_untrusted_files(const std::string& from, const std::string& to, const std::vector<std::string>& names,
                                  uint64_t max_bytes) {
  Fd src(::open(from.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!src.valid()) return errno_error("open " + from);
  const std::string tmp = to + ".tmp." + std::to_string(::getpid());
  remove_tree(tmp);
  if (::mkdir(tmp.c_str(), 0755) < 0) return errno_error("mkdir " + tmp);
  Fd dst(::open(tmp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  auto fail = [&](Error e) -> Error {
    remove_tree(tmp);
    return e;
  };
  if (!dst.valid()) return fail(errno_error("open " + tmp));
  uint64_t total = 0;
  for (const std::string& name : names) {
    const std::string shown = from + "/" + name;
    Fd in(::openat(src.get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!in.valid()) return fail(errno_error("open " + shown));
    struct stat st;
    if (::fstat(in.get(), &st) < 0) return fail(errno_error("stat " + shown));
    if (!S_ISREG(st.st_mode) || st.st_nlink != 1) return fail(Error{shown + ": not a plain regular file"});
    total += static_cast<uint64_t>(st.st_size);
    if (total > max_bytes)
      return fail(Error{from + ": more than " + std::to_string(max_bytes) + " bytes (" + name + " is " +
                        std::to_string(st.st_size) + ")"});
    Fd out(::openat(dst.get(), name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
    if (!out.valid()) return fail(errno_error("create " + tmp + "/" + name));
    if (auto r = copy_sparse(in.get(), out.get(), static_cast<uint64_t>(st.st_size), shown); !r) return fail(r.error());
    if (::fsync(out.get()) < 0) return fail(errno_error("fsync " + tmp + "/" + name));
  }
  if (::fsync(dst.get()) < 0) return fail(errno_error("fsync " + tmp));
  if (::rename(tmp.c_str(), to.c_str()) < 0) return fail(errno_error("rename " + tmp + " to " + to));
  const auto slash = to.rfind('/');
  if (slash != std::string::npos) (void)fsync_path(slash == 0 ? "/" : to.substr(0, slash));
  return Ok();
}

}  // namespace ember::controller
