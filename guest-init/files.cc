#include "guest-init/files.h"

#include "guest-init/klib.h"
#include "guest-init/procfs.h"
#include "guest-init/runtime.h"

namespace ember::guest {

using namespace lx;

void Files::init() {
  const FileKind std_kinds[3] = {FileKind::kStdin, FileKind::kStdout, FileKind::kStderr};
  const uint32_t std_flags[3] = {O_RDONLY, O_WRONLY, O_WRONLY};
  for (int i = 0; i < 3; i++) {
    open_[i] = OpenFile{std_kinds[i], 1, std_flags[i], 0, 0, 0};
    fds_[i].slot = static_cast<uint16_t>(i + 1);
  }
}

OpenFile* Files::get(int64_t fd) {
  if (fd < 0 || fd >= kMaxFds || fds_[fd].slot == 0) return nullptr;
  return &open_[fds_[fd].slot - 1];
}

SysResult Files::open(const OpenFile& f, bool cloexec) {
  int slot = -1;
  for (int i = 0; i < kMaxOpen; i++)
    if (open_[i].refs == 0) {
      slot = i;
      break;
    }
  if (slot < 0) return ENFILE;
  for (int fd = 0; fd < kMaxFds; fd++) {
    if (fds_[fd].slot) continue;
    open_[slot] = f;
    open_[slot].refs = 1;
    fds_[fd].slot = static_cast<uint16_t>(slot + 1);
    fds_[fd].cloexec = cloexec;
    return SysResult::ok(static_cast<uint64_t>(fd));
  }
  return EMFILE;
}

SysResult Files::close(int64_t fd) {
  OpenFile* f = get(fd);
  if (!f) return EBADF;
  if (--f->refs == 0) {
    if (f->kind == FileKind::kMemFile || f->kind == FileKind::kMemDir) g_rt.fs.closed(f->index);
    *f = OpenFile{};
  }
  fds_[fd].slot = 0;
  fds_[fd].cloexec = false;
  return SysResult::ok(0);
}

SysResult Files::dup(int64_t fd, int64_t min_fd, bool cloexec) {
  OpenFile* f = get(fd);
  if (!f) return EBADF;
  if (min_fd < 0 || min_fd >= kMaxFds) return EINVAL;
  for (int64_t n = min_fd; n < kMaxFds; n++) {
    if (fds_[n].slot) continue;
    fds_[n].slot = fds_[fd].slot;
    fds_[n].cloexec = cloexec;
    f->refs++;
    return SysResult::ok(static_cast<uint64_t>(n));
  }
  return EMFILE;
}

SysResult Files::dup_to(int64_t fd, int64_t new_fd, bool cloexec) {
  OpenFile* f = get(fd);
  if (!f) return EBADF;
  if (new_fd < 0 || new_fd >= kMaxFds) return EBADF;
  if (new_fd == fd) return SysResult::ok(static_cast<uint64_t>(fd));
  if (fds_[new_fd].slot) close(new_fd);
  fds_[new_fd].slot = fds_[fd].slot;
  fds_[new_fd].cloexec = cloexec;
  f->refs++;
  return SysResult::ok(static_cast<uint64_t>(new_fd));
}

Lookup Files::lookup(const char* path, uint32_t len) {
  Lookup r;
  const image::ImageReader& img = g_rt.image;
  if (len == 1 && path[0] == '/') {
    r.kind = FileKind::kDir;
    return r;  // the root: prefix "" (every path starts with "/")
  }
  // What the program made shadows the image.
  if (const uint32_t node = g_rt.fs.lookup(path, len)) {
    r.kind = g_rt.fs.node(node).kind == MemFs::Kind::kDir ? FileKind::kMemDir : FileKind::kMemFile;
    r.index = node;
    return r;
  }
  const uint32_t n = img.file_count();
  for (uint32_t i = 0; i < n; i++) {
    image::Bytes p = img.file(i).path;
    if (p.size == len && memcmp(p.data, path, len) == 0) {
      r.kind = FileKind::kFile;
      r.index = i;
      return r;
    }
    if (p.size > len && p.data[len] == '/' && memcmp(p.data, path, len) == 0) {
      r.kind = FileKind::kDir;
      r.index = i;
      r.prefix_len = len;
      return r;  // a file below it exists: the directory does
    }
  }
  // A few devices, unless the image has its own; then /proc, /sys, /dev.
  if (str_eq(path, len, "/dev/null")) r.kind = FileKind::kNull;
  else if (str_eq(path, len, "/dev/zero")) r.kind = FileKind::kZero;
  else if (str_eq(path, len, "/dev/full")) r.kind = FileKind::kFull;
  else if (str_eq(path, len, "/dev/urandom") || str_eq(path, len, "/dev/random")) r.kind = FileKind::kRandom;
  else if (str_eq(path, len, "/dev/stdin")) r.kind = FileKind::kStdin;
  else if (str_eq(path, len, "/dev/stdout")) r.kind = FileKind::kStdout;
  else if (str_eq(path, len, "/dev/stderr")) r.kind = FileKind::kStderr;
  else if (const SynthEntry* e = synth_lookup(path, len); e && e->id != SynthId::kDevice) {
    r.kind = e->dir ? FileKind::kSynthDir : FileKind::kSynth;
    r.index = static_cast<uint32_t>(e->id);
  }
  return r;
}

}  // namespace ember::guest
