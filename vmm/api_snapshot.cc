#include "vmm/api_snapshot.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "base/fd.h"
#include "vmm/snapshot.h"

namespace ember {

namespace {

constexpr char kStateSuffix[] = ".vmstate";

Result<void> pwrite_all(int fd, const uint8_t* p, uint64_t n, const std::string& what) {
  uint64_t off = 0;
  while (off < n) {
    const uint64_t chunk = n - off > (1u << 30) ? (1u << 30) : n - off;
    const ssize_t w = ::pwrite(fd, p + off, chunk, static_cast<off_t>(off));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return errno_error("writing " + what);
    off += static_cast<uint64_t>(w);
  }
  return Ok();
}

// A file written under a temporary name and renamed into place, or removed
// if it never got there. The *at() calls are the ones the seccomp lists
// already know (unlinkat, renameat2, linkat), not unlink/rename/link.
class TempFile {
 public:
  explicit TempFile(std::string final_path)
      : final_(std::move(final_path)), tmp_(final_ + ".tmp-" + std::to_string(::getpid())) {}
  ~TempFile() {
    if (!done_) ::unlinkat(AT_FDCWD, tmp_.c_str(), 0);
  }
  Result<void> create() {
    ::unlinkat(AT_FDCWD, tmp_.c_str(), 0);  // left by a crashed ember-vmm with our pid
    fd_ = Fd(::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!fd_.valid()) return errno_error("creating " + tmp_);
    return Ok();
  }
  // The image as a hard link, when that works.
  bool link_from(const std::string& source) {
    ::unlinkat(AT_FDCWD, tmp_.c_str(), 0);
    return ::linkat(AT_FDCWD, source.c_str(), AT_FDCWD, tmp_.c_str(), 0) == 0;
  }
  int fd() const { return fd_.get(); }
  const std::string& path() const { return final_; }
  Result<void> commit() {
    if (fd_.valid() && ::fsync(fd_.get()) < 0) return errno_error("fsync " + tmp_);
    if (::renameat2(AT_FDCWD, tmp_.c_str(), AT_FDCWD, final_.c_str(), 0) < 0)
      return errno_error("renaming " + tmp_ + " to " + final_);
    done_ = true;
    return Ok();
  }

 private:
  std::string final_, tmp_;
  Fd fd_;
  bool done_ = false;
};

std::string parent_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

std::string snapshot_image_path(const std::string& state_path) {
  const size_t n = sizeof kStateSuffix - 1;
  const auto slash = state_path.find_last_of('/');
  const size_t base = slash == std::string::npos ? 0 : slash + 1;
  if (state_path.size() > base + n && state_path.compare(state_path.size() - n, n, kStateSuffix) == 0)
    return state_path.substr(0, state_path.size() - n) + ".img";
  return state_path + ".img";
}

SnapshotFilePaths snapshot_load_paths(const std::string& snapshot_path, const std::string& mem_path) {
  struct stat st;
  if (::stat(snapshot_path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    return SnapshotFilePaths{snapshot_path + "/" + kVmstateFile, mem_path, snapshot_path + "/" + kImageFile};
  return SnapshotFilePaths{snapshot_path, mem_path, snapshot_image_path(snapshot_path)};
}

Result<uint64_t> write_snapshot_files(const SnapshotFilePaths& paths, std::span<const uint8_t> state,
                                      const uint8_t* ram, uint64_t ram_size, const uint8_t* image,
                                      uint64_t image_size, const std::string& image_source) {
  if (paths.state == paths.mem || paths.state == paths.image || paths.mem == paths.image)
    return Error{"snapshot_path and mem_file_path must name different files (the image goes to " + paths.image + ")"};
  for (const std::string* p : {&paths.state, &paths.mem}) {
    struct stat st;
    if (::stat(p->c_str(), &st) == 0 && !S_ISREG(st.st_mode)) return Error{*p + ": exists and is not a regular file"};
    const std::string dir = parent_of(*p);
    if (::stat(dir.c_str(), &st) != 0) return errno_error(dir);
  }

  TempFile img(paths.image);
  bool linked = false;
  if (!image_source.empty()) {
    struct stat st;
    if (::stat(image_source.c_str(), &st) == 0 && S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) == image_size)
      linked = img.link_from(image_source);
  }
  if (!linked) {
    EMBER_TRY_VOID(img.create());
    EMBER_TRY_VOID(pwrite_all(img.fd(), image, image_size, paths.image));
  }

  TempFile mem(paths.mem);
  EMBER_TRY_VOID(mem.create());
  if (::ftruncate(mem.fd(), static_cast<off_t>(ram_size)) < 0) return errno_error("sizing " + paths.mem);
  auto written = write_sparse(mem.fd(), ram, ram_size);
  if (!written) return Error{paths.mem + ": " + written.message()};

  TempFile st(paths.state);
  EMBER_TRY_VOID(st.create());
  EMBER_TRY_VOID(pwrite_all(st.fd(), state.data(), state.size(), paths.state));

  // The state file last: it names the other two by convention, so it must
  // never be newer than they are.
  EMBER_TRY_VOID(img.commit());
  EMBER_TRY_VOID(mem.commit());
  EMBER_TRY_VOID(st.commit());
  Fd dir(::open(parent_of(paths.state).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.valid()) ::fsync(dir.get());
  return *written;
}

}  // namespace ember
