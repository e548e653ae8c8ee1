#include "jailer/jail_record.h"

#include <fcntl.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "base/fd.h"
#include "jailer/plain_text.h"

namespace ember::jail {

namespace {

constexpr const char* kCgroupXattr = "trusted.ember.cgroups";
constexpr const char* kCgroupFile = "cgroups";

}  // namespace

Result<void> write_cgroup_record(int jail_fd, const std::string& jail_dir, const std::vector<std::string>& dirs) {
  std::string text;
  for (const std::string& d : dirs) text += d + "\n";
  if (::fsetxattr(jail_fd, kCgroupXattr, text.data(), text.size(), XATTR_CREATE) == 0) return Ok();
  if (errno != ENOTSUP) return errno_error("setxattr " + std::string(kCgroupXattr) + " on " + jail_dir);
  const std::string shown = jail_dir + "/" + kCgroupFile;
  Fd f(::openat(jail_fd, kCgroupFile, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!f.valid()) return errno_error("create " + shown);
  if (::write(f.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) return errno_error("write " + shown);
  return Ok();
}

std::vector<std::string> read_cgroup_record(int jail_fd) {
  std::string text;
  char buf[8192];
  const ssize_t n = ::fgetxattr(jail_fd, kCgroupXattr, buf, sizeof buf);
  if (n > 0) {
    text.assign(buf, static_cast<size_t>(n));
  } else {
    Fd rec(::openat(jail_fd, kCgroupFile, O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (rec.valid()) text = read_fd(rec.get());
  }
  return lines_of(text);
}

long oom_kills(const std::string& memory_dir) {
  if (memory_dir.empty()) return 0;
  for (const char* file : {"/memory.events", "/memory.oom_control"}) {
    Fd fd(::open((memory_dir + file).c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) continue;
    for (const std::string& line : lines_of(read_fd(fd.get())))  // "key value"
      if (line.rfind("oom_kill ", 0) == 0) return std::strtol(line.c_str() + 9, nullptr, 10);
    return 0;
  }
  return 0;
}

}  // namespace ember::jail
