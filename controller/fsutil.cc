#include "controller/fsutil.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <system_error>

#include "vmm/fd.h"

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

std::string self_dir() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string self(buf, static_cast<size_t>(n));
  const auto slash = self.rfind('/');
  return slash == std::string::npos ? std::string(".") : self.substr(0, slash);
}

}  // namespace ember::controller
