#include "vmm/snapshot.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include "api/guest_layout.h"
#include "vmm/crc32c.h"

namespace ember {

namespace {

constexpr uint64_t kPage = 4096;

bool page_is_zero(const uint8_t* p) {
  const auto* w = reinterpret_cast<const uint64_t*>(p);
  uint64_t acc = 0;
  for (size_t i = 0; i < kPage / 8; i += 8)
    acc |= w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7];
  return acc == 0;
}

Result<void> pwrite_all(int fd, const uint8_t* p, uint64_t n, uint64_t off, const char* what) {
  while (n) {
    const ssize_t w = ::pwrite(fd, p, n > (1u << 30) ? (1u << 30) : n, static_cast<off_t>(off));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return errno_error(std::string("writing ") + what);
    p += w;
    n -= static_cast<uint64_t>(w);
    off += static_cast<uint64_t>(w);
  }
  return Ok();
}

int renameat2_(int olddir, const char* oldname, int newdir, const char* newname, unsigned flags) {
  return static_cast<int>(::syscall(SYS_renameat2, olddir, oldname, newdir, newname, flags));
}

std::string parent_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string base_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// DIR may exist only as an empty directory or an earlier snapshot.
Result<bool> check_existing(const std::string& dir) {
  struct stat st;
  if (::lstat(dir.c_str(), &st) < 0) {
    if (errno == ENOENT) return false;
    return errno_error(dir);
  }
  if (!S_ISDIR(st.st_mode)) return Error{dir + " exists and is not a directory"};
  DIR* d = ::opendir(dir.c_str());
  if (!d) return errno_error(dir);
  std::string stray;
  while (dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n == "." || n == ".." || n == kVmstateFile || n == kMemFile || n == kImageFile) continue;
    stray = n;
    break;
  }
  ::closedir(d);
  if (!stray.empty())
    return Error{dir + " exists and is not an Ember snapshot directory (it holds " + stray +
                 "): not replacing it"};
  return true;
}

}  // namespace

Result<uint64_t> write_sparse(int fd, const uint8_t* data, uint64_t size) {
  auto step = [&](uint64_t off) { return size - off < kPage ? size - off : kPage; };
  auto zero = [&](uint64_t off) {
    if (step(off) == kPage) return page_is_zero(data + off);
    for (uint64_t i = off; i < size; i++)
      if (data[i]) return false;
    return true;
  };
  uint64_t written = 0, at = 0;
  while (at < size) {
    if (zero(at)) {
      at += step(at);
      continue;
    }
    uint64_t end = at;
    while (end < size && !zero(end)) end += step(end);
    EMBER_TRY_VOID(pwrite_all(fd, data + at, end - at, at, kMemFile));
    written += end - at;
    at = end;
  }
  return written;
}

SnapshotWriter::~SnapshotWriter() { abandon(); }

void SnapshotWriter::abandon() {
  if (done_ || !parent_.valid() || tmp_name_.empty()) return;
  if (tmp_dir_.valid())
    for (const char* f : {kVmstateFile, kMemFile, kImageFile}) ::unlinkat(tmp_dir_.get(), f, 0);
  ::unlinkat(parent_.get(), tmp_name_.c_str(), AT_REMOVEDIR);
  done_ = true;
}

Result<SnapshotWriter> SnapshotWriter::prepare(const std::string& dir_in, uint64_t mem_size, const uint8_t* image,
                                               uint64_t image_size, const std::string& image_path) {
  std::string dir = dir_in;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (dir.empty()) return Error{"snapshot directory: empty path"};
  SnapshotWriter w;
  w.dir_ = dir;
  w.mem_size_ = mem_size;
  EMBER_TRY(w.replace_, check_existing(dir));
  const std::string parent = parent_of(dir);
  w.final_name_ = base_of(dir);
  w.tmp_name_ = w.final_name_ + ".tmp-" + std::to_string(::getpid());
  w.parent_ = Fd(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!w.parent_.valid()) return errno_error("snapshot directory's parent " + parent);
  // A temporary directory left by a crashed ember-vmm with our pid: clear it.
  {
    Fd old(::openat(w.parent_.get(), w.tmp_name_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
    if (old.valid())
      for (const char* f : {kVmstateFile, kMemFile, kImageFile}) ::unlinkat(old.get(), f, 0);
    ::unlinkat(w.parent_.get(), w.tmp_name_.c_str(), AT_REMOVEDIR);
  }
  if (::mkdirat(w.parent_.get(), w.tmp_name_.c_str(), 0755) < 0)
    return errno_error("creating " + parent + "/" + w.tmp_name_);
  w.tmp_dir_ = Fd(::openat(w.parent_.get(), w.tmp_name_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
  if (!w.tmp_dir_.valid()) return errno_error("opening " + w.tmp_name_);

  // The image first: it is complete before the guest runs.
  w.image_crc_ = crc32c(image, image_size);
  bool linked = false;
  if (!image_path.empty()) {
    struct stat st;
    if (::stat(image_path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) == image_size)
      linked = ::linkat(AT_FDCWD, image_path.c_str(), w.tmp_dir_.get(), kImageFile, 0) == 0;
  }
  if (!linked) {
    Fd img(::openat(w.tmp_dir_.get(), kImageFile, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!img.valid()) return errno_error(std::string("creating ") + kImageFile);
    EMBER_TRY_VOID(pwrite_all(img.get(), image, image_size, 0, kImageFile));
    if (::fsync(img.get()) < 0) return errno_error(std::string("fsync ") + kImageFile);
  }

  w.mem_ = Fd(::openat(w.tmp_dir_.get(), kMemFile, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!w.mem_.valid()) return errno_error(std::string("creating ") + kMemFile);
  if (::ftruncate(w.mem_.get(), static_cast<off_t>(mem_size)) < 0) return errno_error(std::string("sizing ") + kMemFile);
  w.state_ = Fd(::openat(w.tmp_dir_.get(), kVmstateFile, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!w.state_.valid()) return errno_error(std::string("creating ") + kVmstateFile);
  return w;
}

Result<uint64_t> SnapshotWriter::commit(std::span<const uint8_t> vmstate, const uint8_t* ram, uint64_t ram_size) {
  if (done_ || !state_.valid()) return Error{"snapshot: not prepared"};
  if (ram_size != mem_size_) return Error{"snapshot: RAM size changed"};
  EMBER_TRY(uint64_t written, write_sparse(mem_.get(), ram, ram_size));
  if (::fsync(mem_.get()) < 0) return errno_error(std::string("fsync ") + kMemFile);
  EMBER_TRY_VOID(pwrite_all(state_.get(), vmstate.data(), vmstate.size(), 0, kVmstateFile));
  if (::fsync(state_.get()) < 0) return errno_error(std::string("fsync ") + kVmstateFile);
  if (::fsync(tmp_dir_.get()) < 0) return errno_error("fsync " + tmp_name_);
  if (replace_) {
    if (renameat2_(parent_.get(), tmp_name_.c_str(), parent_.get(), final_name_.c_str(), RENAME_EXCHANGE) < 0)
      return errno_error("replacing " + dir_);
    // The name tmp_name_ now holds the old snapshot (tmp_dir_ still refers
    // to the new one, now at DIR): remove the old files through
    // "<tmp_name_>/<file>" relative to the parent.
    for (const char* f : {kVmstateFile, kMemFile, kImageFile})
      ::unlinkat(parent_.get(), (tmp_name_ + "/" + f).c_str(), 0);
    ::unlinkat(parent_.get(), tmp_name_.c_str(), AT_REMOVEDIR);
  } else if (renameat2_(parent_.get(), tmp_name_.c_str(), parent_.get(), final_name_.c_str(), RENAME_NOREPLACE) < 0) {
    // File systems without RENAME_NOREPLACE (9p, some FUSE) say EINVAL: a
    // plain rename then. DIR was absent or empty at prepare(); a plain
    // rename replaces at most an empty directory (a full one: ENOTEMPTY).
    if (errno != EINVAL || renameat2_(parent_.get(), tmp_name_.c_str(), parent_.get(), final_name_.c_str(), 0) < 0)
      return errno_error("creating " + dir_);
  }
  ::fsync(parent_.get());
  done_ = true;
  return written;
}

// ---------------------------------------------------------------- restore

namespace {

Result<Fd> open_file(const std::string& path, struct stat* st) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return errno_error(path);
  if (::fstat(fd.get(), st) < 0) return errno_error(path);
  if (!S_ISREG(st->st_mode)) return Error{path + ": not a regular file"};
  return fd;
}

}  // namespace

Result<SnapshotFiles> open_snapshot(const std::string& dir) {
  return open_snapshot_files(dir + "/" + kVmstateFile, dir + "/" + kMemFile, dir + "/" + kImageFile);
}

Result<SnapshotFiles> open_snapshot_files(const std::string& state_path, const std::string& mem_path,
                                          const std::string& image_path) {
  SnapshotFiles f;
  struct stat st;
  {
    const std::string& path = state_path;
    EMBER_TRY(Fd fd, open_file(path, &st));
    if (static_cast<uint64_t>(st.st_size) > kVmstateMaxSize)
      return Error{path + ": " + std::to_string(st.st_size) + " bytes, not a snapshot state file"};
    std::vector<uint8_t> bytes(static_cast<size_t>(st.st_size));
    size_t got = 0;
    while (got < bytes.size()) {
      const ssize_t n = ::read(fd.get(), bytes.data() + got, bytes.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errno_error(path);
      if (n == 0) break;
      got += static_cast<size_t>(n);
    }
    bytes.resize(got);
    auto parsed = parse_vmstate(bytes);
    if (!parsed) {
      // "vm.vmstate: bad magic ..." -> "<state_path>: bad magic ..."
      std::string why = parsed.message();
      const std::string prefix = std::string(kVmstateFile) + ": ";
      if (why.rfind(prefix, 0) == 0) why = why.substr(prefix.size());
      return Error{state_path + ": " + why};
    }
    f.state = std::move(*parsed);
  }
  const MachineSnapshot& m = f.state.machine;
  {
    const std::string& path = mem_path;
    EMBER_TRY(f.mem, open_file(path, &st));
    if (static_cast<uint64_t>(st.st_size) != m.mem_size)
      return Error{path + ": " + std::to_string(st.st_size) + " bytes, but the snapshot's memory is " +
                   std::to_string(m.mem_size) + " bytes"};
  }
  {
    const std::string& path = image_path;
    EMBER_TRY(Fd fd, open_file(path, &st));
    if (static_cast<uint64_t>(st.st_size) != m.image_size)
      return Error{path + ": " + std::to_string(st.st_size) + " bytes, but the snapshot was taken with a " +
                   std::to_string(m.image_size) + "-byte image"};
    if (m.image_size == 0) return Error{path + ": empty image"};
    const uint64_t mapped = (m.image_size + abi::kPageSize - 1) & ~(abi::kPageSize - 1);
    void* p = ::mmap(nullptr, mapped, PROT_READ, MAP_PRIVATE, fd.get(), 0);
    if (p == MAP_FAILED) return errno_error("mmap " + path);
    f.image = Mapping(p, mapped);
    f.image_size = m.image_size;
    if (crc32c(f.image.bytes(), m.image_size) != m.image_crc32c)
      return Error{path + ": CRC mismatch (not the image this snapshot was taken with)"};
  }
  return f;
}

}  // namespace ember
