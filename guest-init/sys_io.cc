// File and stream syscalls: consoles, image files (read-only), directories,
// /dev/null & co.
#include "api/image_format.h"
#include "guest-init/stdio.h"
#include "guest-init/files.h"
#include "guest-init/klib.h"
#include "guest-init/path.h"
#include "guest-init/platform.h"
#include "guest-init/runtime.h"
#include "guest-init/syscalls.h"

namespace ember::guest {

using namespace lx;

namespace {

constexpr uint32_t kIovMax = 1024;
constexpr uint32_t R_OK = 4, W_OK = 2, X_OK = 1;

template <typename T>
T* user_ptr(uint64_t p) {
  return reinterpret_cast<T*>(p);
}

// The directory path a Lookup of kind kDir names ("" for the root).
const char* dir_path(const Lookup& d, uint32_t* len) {
  *len = d.prefix_len;
  if (d.prefix_len == 0) return "";
  return g_rt.image.file(d.index).path.data;
}

// Reads the NUL-terminated path at `user` and makes it absolute and
// normalised relative to dirfd. `empty_ok`: "" names dirfd itself (then
// *is_empty is set and out is unused).
SysResult resolve_at(int64_t dirfd, uint64_t user, char* out, bool empty_ok, bool* is_empty, uint32_t* out_len) {
  *is_empty = false;
  if (!user_ok(user, 1)) return EFAULT;
  const char* p = user_ptr<const char>(user);
  uint32_t n = 0;
  while (n < kPathMax && p[n]) n++;
  if (n == kPathMax) return ENAMETOOLONG;
  if (n == 0) {
    if (!empty_ok) return ENOENT;
    *is_empty = true;
    return SysResult::ok(0);
  }
  const char* base = "";
  uint32_t base_len = 0;
  if (p[0] != '/') {
    if (static_cast<int32_t>(dirfd) == AT_FDCWD) {
      base = dir_path(g_rt.cwd, &base_len);
    } else {
      OpenFile* f = g_rt.files.get(dirfd);
      if (!f) return EBADF;
      if (f->kind != FileKind::kDir) return ENOTDIR;
      Lookup d{FileKind::kDir, f->index, f->prefix_len};
      base = dir_path(d, &base_len);
    }
  }
  int32_t len = normalise_path(base, base_len, p, n, out, kPathMax);
  if (len < 0) return ENAMETOOLONG;
  *out_len = static_cast<uint32_t>(len);
  return SysResult::ok(0);
}

uint64_t file_size(uint32_t index) { return g_rt.image.file(index).size; }

void fill_stat(const OpenFile& f, Stat* st) {
  memset(st, 0, sizeof *st);
  st->st_dev = 1;
  st->st_nlink = 1;
  st->st_blksize = 4096;
  const uint64_t boot_s = g_rt.clock.realtime_ns() / 1000000000ull;  // images carry no times
  st->st_atime = st->st_mtime = st->st_ctime = boot_s;
  switch (f.kind) {
    case FileKind::kFile: {
      image::ImageFile file = g_rt.image.file(f.index);
      st->st_ino = 16 + f.index;
      st->st_mode = file.mode;
      st->st_size = static_cast<int64_t>(file.size);
      st->st_blocks = static_cast<int64_t>((file.size + 511) / 512);
      break;
    }
    case FileKind::kDir:
      st->st_ino = f.prefix_len == 0 ? 2 : (uint64_t{1} << 32) + (uint64_t{f.prefix_len} << 16) + f.index;
      st->st_mode = S_IFDIR | 0755;
      st->st_nlink = 2;
      st->st_size = 4096;
      st->st_blocks = 8;
      break;
    case FileKind::kStdin:
    case FileKind::kStdout:
    case FileKind::kStderr:
      // Pipes: what the VMM's streams are (not a terminal).
      st->st_dev = 2;
      st->st_ino = 3 + static_cast<uint64_t>(f.kind);
      st->st_mode = S_IFIFO | 0600;
      break;
    case FileKind::kNull:
    case FileKind::kZero:
    case FileKind::kRandom:
      st->st_dev = 3;
      st->st_ino = 8 + static_cast<uint64_t>(f.kind);
      st->st_mode = S_IFCHR | 0666;
      st->st_rdev = f.kind == FileKind::kNull ? 0x103 : f.kind == FileKind::kZero ? 0x105 : 0x109;
      break;
    case FileKind::kNone:
      break;
  }
}

OpenFile open_file_for(const Lookup& l, uint32_t flags) {
  OpenFile f;
  f.kind = l.kind;
  f.flags = flags & (O_ACCMODE | O_APPEND | O_NONBLOCK | O_DIRECTORY | O_PATH);
  f.index = l.index;
  f.prefix_len = l.prefix_len;
  return f;
}

SysResult do_open(int64_t dirfd, uint64_t user_path, uint32_t flags) {
  char path[kPathMax];
  uint32_t len;
  bool empty;
  SysResult r = resolve_at(dirfd, user_path, path, false, &empty, &len);
  if (r.failed()) return r;
  Lookup l = Files::lookup(path, len);
  const uint32_t acc = flags & O_ACCMODE;
  if (l.kind == FileKind::kNone) return (flags & O_CREAT) ? EROFS : ENOENT;
  if ((flags & O_CREAT) && (flags & O_EXCL)) return EEXIST;
  if ((flags & O_TMPFILE) == O_TMPFILE) return EROFS;
  if (l.kind == FileKind::kDir) {
    if (acc != O_RDONLY) return EISDIR;
  } else if (flags & O_DIRECTORY) {
    return ENOTDIR;
  }
  if (l.kind == FileKind::kFile && (acc != O_RDONLY || (flags & O_TRUNC)) && !(flags & O_PATH)) return EROFS;
  return g_rt.files.open(open_file_for(l, flags), flags & O_CLOEXEC);
}

// One read from an open file into [buf, buf+n); offset given explicitly
// (pread) or the description's (read).
SysResult read_file(OpenFile* f, uint8_t* buf, uint64_t n, uint64_t* offset) {
  switch (f->kind) {
    case FileKind::kStdin: {
      if (offset != &f->offset) return ESPIPE;
      int64_t got = g_stdio.read(buf, n, !(f->flags & O_NONBLOCK));
      if (got < 0) return EAGAIN;
      return SysResult::ok(static_cast<uint64_t>(got));
    }
    case FileKind::kFile: {
      image::ImageFile file = g_rt.image.file(f->index);
      if (*offset >= file.size) return SysResult::ok(0);
      uint64_t take = file.size - *offset < n ? file.size - *offset : n;
      memcpy(buf, file.data + *offset, take);
      *offset += take;
      return SysResult::ok(take);
    }
    case FileKind::kDir: return EISDIR;
    case FileKind::kNull: return SysResult::ok(0);
    case FileKind::kZero: memset(buf, 0, n); return SysResult::ok(n);
    case FileKind::kRandom: random_bytes(buf, n); return SysResult::ok(n);
    default: return EBADF;
  }
}

uint32_t stream_of(FileKind k) { return k == FileKind::kStderr ? 2 : 1; }

SysResult check_readable(OpenFile* f) {
  if (!f) return EBADF;
  if ((f->flags & O_PATH) || (f->flags & O_ACCMODE) == O_WRONLY) return EBADF;
  return SysResult::ok(0);
}

SysResult check_writable(OpenFile* f) {
  if (!f) return EBADF;
  if ((f->flags & O_PATH) || (f->flags & O_ACCMODE) == O_RDONLY) return EBADF;
  if (f->kind == FileKind::kFile || f->kind == FileKind::kDir || f->kind == FileKind::kStdin) return EBADF;
  return SysResult::ok(0);
}

// Writes go to the consoles (buffered until flush) or nowhere.
void write_to(OpenFile* f, const uint8_t* data, uint64_t n) {
  if (f->kind == FileKind::kStdout || f->kind == FileKind::kStderr) g_stdio.append(stream_of(f->kind), data, n);
}
void flush(OpenFile* f) {
  if (f->kind == FileKind::kStdout || f->kind == FileKind::kStderr) g_stdio.commit(stream_of(f->kind));
}

bool wants_write_bits(uint32_t mode) { return mode & W_OK; }

}  // namespace

bool user_ok(uint64_t p, uint64_t n) {
  uint64_t end;
  return p >= kPage && !add_overflows(p, n, &end) && end <= (1ull << 47);
}

EMBER_SYSCALL(read) {
  OpenFile* f = g_rt.files.get(static_cast<int64_t>(a.a[0]));
  SysResult ok = check_readable(f);
  if (ok.failed()) return ok;
  if (a.a[2] == 0) return SysResult::ok(0);
  if (!user_ok(a.a[1], a.a[2])) return EFAULT;
  return read_file(f, user_ptr<uint8_t>(a.a[1]), a.a[2], &f->offset);
}

EMBER_SYSCALL(pread64) {
  OpenFile* f = g_rt.files.get(static_cast<int64_t>(a.a[0]));
  SysResult ok = check_readable(f);
  if (ok.failed()) return ok;
  if (f->kind == FileKind::kStdin || f->kind == FileKind::kStdout || f->kind == FileKind::kStderr) return ESPIPE;
  if (static_cast<int64_t>(a.a[3]) < 0) return EINVAL;
  if (a.a[2] == 0) return SysResult::ok(0);
  if (!user_ok(a.a[1], a.a[2])) return EFAULT;
  uint64_t off = a.a[3];
  return read_file(f, user_ptr<uint8_t>(a.a[1]), a.a[2], &off);
}

EMBER_SYSCALL(readv) {
  OpenFile* f = g_rt.files.get(static_cast<int64_t>(a.a[0]));
  SysResult ok = check_readable(f);
  if (ok.failed()) return ok;
  const uint64_t cnt = a.a[2];
  if (cnt > kIovMax) return EINVAL;
  if (!user_ok(a.a[1], cnt * sizeof(Iovec))) return EFAULT;
  const Iovec* iov = user_ptr<const Iovec>(a.a[1]);
  uint64_t total = 0;
  for (uint64_t i = 0; i < cnt; i++) {
    if (iov[i].len == 0) continue;
    if (!user_ok(iov[i].base, iov[i].len)) return total ? SysResult::ok(total) : SysResult(EFAULT);
    SysResult r = read_file(f, user_ptr<uint8_t>(iov[i].base), iov[i].len, &f->offset);
    if (r.failed()) return total ? SysResult::ok(total) : r;
    total += r.value();
    if (r.value() < iov[i].len) break;  // short read: do not block for the rest
    // A stream that has nothing more must not block a readv that got data.
    if (f->kind == FileKind::kStdin && !g_stdio.buffered()) break;
  }
  return SysResult::ok(total);
}

EMBER_SYSCALL(write) {
  OpenFile* f = g_rt.files.get(static_cast<int64_t>(a.a[0]));
  SysResult ok = check_writable(f);
  if (ok.failed()) return ok;
  if (a.a[2] == 0) return SysResult::ok(0);
  if (!user_ok(a.a[1], a.a[2])) return EFAULT;
  write_to(f, user_ptr<const uint8_t>(a.a[1]), a.a[2]);
  flush(f);
  return SysResult::ok(a.a[2]);
}

EMBER_SYSCALL(pwrite64) {
  OpenFile* f = g_rt.files.get(static_cast<int64_t>(a.a[0]));
  if (!f) return EBADF;
  if (f->kind == FileKind::kStdout || f->kind == FileKind::kStderr || f->kind == FileKind::kStdin) return ESPIPE;
  SysResult ok = check_writable(f);
  if (ok.failed()) return ok;
  return SysResult::ok(a.a[2]);
}

EMBER_SYSCALL(writev) {
  OpenFile* f = g_rt.files.get(static_cast<int64_t>(a.a[0]));
  SysResult ok = check_writable(f);
  if (ok.failed()) return ok;
  const uint64_t cnt = a.a[2];
  if (cnt > kIovMax) return EINVAL;
  if (!user_ok(a.a[1], cnt * sizeof(Iovec))) return EFAULT;
  const Iovec* iov = user_ptr<const Iovec>(a.a[1]);
  uint64_t total = 0;
  for (uint64_t i = 0; i < cnt; i++) {
    if (iov[i].len == 0) continue;
    if (!user_ok(iov[i].base, iov[i].len)) {
      flush(f);
      return total ? SysResult::ok(total) : SysResult(EFAULT);
    }
    write_to(f, user_ptr<const uint8_t>(iov[i].base), iov[i].len);
    total += iov[i].len;
  }
  flush(f);  // one notify decision for all the pieces
  return SysResult::ok(total);
}

EMBER_SYSCALL(open) { return do_open(AT_FDCWD, a.a[0], static_cast<uint32_t>(a.a[1])); }
EMBER_SYSCALL(openat) {
  return do_open(static_cast<int32_t>(a.a[0]), a.a[1], static_cast<uint32_t>(a.a[2]));
}
EMBER_SYSCALL(close) { return g_rt.files.close(static_cast<int64_t>(a.a[0])); }

EMBER_SYSCALL(lseek) {
  OpenFile* f = g_rt.files.get(static_cast<int64_t>(a.a[0]));
  if (!f) return EBADF;
  const int64_t off = static_cast<int64_t>(a.a[1]);
  const uint32_t whence = static_cast<uint32_t>(a.a[2]);
  switch (f->kind) {
    case FileKind::kStdin:
    case FileKind::kStdout:
    case FileKind::kStderr: return ESPIPE;
    case FileKind::kNull:
    case FileKind::kZero:
    case FileKind::kRandom: return SysResult::ok(0);
    case FileKind::kDir:
      if (whence == SEEK_SET && off >= 0) {
        f->offset = static_cast<uint64_t>(off);
        return SysResult::ok(f->offset);
      }
      return EINVAL;
    default: break;
  }
  const int64_t size = static_cast<int64_t>(file_size(f->index));
  int64_t base;
  switch (whence) {
    case SEEK_SET: base = 0; break;
    case SEEK_CUR: base = static_cast<int64_t>(f->offset); break;
    case SEEK_END: base = size; break;
    case SEEK_DATA:
      if (off < 0 || off >= size) return ENXIO;
      f->offset = static_cast<uint64_t>(off);
      return SysResult::ok(f->offset);
    case SEEK_HOLE:
      if (off < 0 || off > size) return ENXIO;
      f->offset = static_cast<uint64_t>(size);
      return SysResult::ok(f->offset);
    default: return EINVAL;
  }
  int64_t pos;
  if (__builtin_add_overflow(base, off, &pos)) return EOVERFLOW;
  if (pos < 0) return EINVAL;
  f->offset = static_cast<uint64_t>(pos);
  return SysResult::ok(f->offset);
}

EMBER_SYSCALL(fstat) {
  OpenFile* f = g_rt.files.get(static_cast<int64_t>(a.a[0]));
  if (!f) return EBADF;
  if (!user_ok(a.a[1], sizeof(Stat))) return EFAULT;
  fill_stat(*f, user_ptr<Stat>(a.a[1]));
  return SysResult::ok(0);
}

EMBER_SYSCALL(newfstatat) {
  const int64_t dirfd = static_cast<int32_t>(a.a[0]);
  const uint32_t flags = static_cast<uint32_t>(a.a[3]);
  if (!user_ok(a.a[2], sizeof(Stat))) return EFAULT;
  char path[kPathMax];
  uint32_t len = 0;
  bool empty;
  SysResult r = resolve_at(dirfd, a.a[1], path, flags & AT_EMPTY_PATH, &empty, &len);
  if (r.failed()) return r;
  if (empty) {
    OpenFile* f = dirfd == AT_FDCWD ? nullptr : g_rt.files.get(dirfd);
    if (dirfd == AT_FDCWD) {
      OpenFile cwd = open_file_for(g_rt.cwd, O_RDONLY);
      fill_stat(cwd, user_ptr<Stat>(a.a[2]));
      return SysResult::ok(0);
    }
    if (!f) return EBADF;
    fill_stat(*f, user_ptr<Stat>(a.a[2]));
    return SysResult::ok(0);
  }
  Lookup l = Files::lookup(path, len);
  if (l.kind == FileKind::kNone) return ENOENT;
  fill_stat(open_file_for(l, O_RDONLY), user_ptr<Stat>(a.a[2]));
  return SysResult::ok(0);
}

EMBER_SYSCALL(stat) {
  SyscallArgs b = a;
  b.a[0] = static_cast<uint64_t>(static_cast<int64_t>(AT_FDCWD));
  b.a[1] = a.a[0];
  b.a[2] = a.a[1];
  b.a[3] = 0;
  return sys_newfstatat(b);
}
EMBER_SYSCALL(lstat) { return sys_stat(a); }  // the image has no symlinks

EMBER_SYSCALL(statx) { return ENOSYS; }  // libcs fall back to newfstatat

SysResult do_access(int64_t dirfd, uint64_t user_path, uint32_t mode, uint32_t flags) {
  if (mode & ~(R_OK | W_OK | X_OK)) return EINVAL;
  char path[kPathMax];
  uint32_t len = 0;
  bool empty;
  SysResult r = resolve_at(dirfd, user_path, path, flags & AT_EMPTY_PATH, &empty, &len);
  if (r.failed()) return r;
  Lookup l;
  if (empty) {
    OpenFile* f = g_rt.files.get(dirfd);
    if (!f) return EBADF;
    l = Lookup{f->kind, f->index, f->prefix_len};
  } else {
    l = Files::lookup(path, len);
  }
  if (l.kind == FileKind::kNone) return ENOENT;
  if (wants_write_bits(mode) && (l.kind == FileKind::kFile || l.kind == FileKind::kDir)) return EROFS;
  if ((mode & X_OK) && l.kind == FileKind::kFile && !(g_rt.image.file(l.index).mode & 0111)) return EACCES;
  return SysResult::ok(0);
}

EMBER_SYSCALL(access) { return do_access(AT_FDCWD, a.a[0], static_cast<uint32_t>(a.a[1]), 0); }
EMBER_SYSCALL(faccessat) {
  return do_access(static_cast<int32_t>(a.a[0]), a.a[1], static_cast<uint32_t>(a.a[2]), 0);
}
EMBER_SYSCALL(faccessat2) {
  return do_access(static_cast<int32_t>(a.a[0]), a.a[1], static_cast<uint32_t>(a.a[2]),
                   static_cast<uint32_t>(a.a[3]));
}

EMBER_SYSCALL(ioctl) {
  OpenFile* f = g_rt.files.get(static_cast<int64_t>(a.a[0]));
  if (!f) return EBADF;
  switch (static_cast<uint32_t>(a.a[1])) {
    case FIONREAD: {
      if (!user_ok(a.a[2], 4)) return EFAULT;
      uint64_t n = 0;
      if (f->kind == FileKind::kStdin) {
        g_stdio.readable();
        n = g_stdio.buffered();
      } else if (f->kind == FileKind::kFile) {
        uint64_t size = file_size(f->index);
        n = f->offset < size ? size - f->offset : 0;
      }
      *user_ptr<int32_t>(a.a[2]) = static_cast<int32_t>(n > 0x7fffffff ? 0x7fffffff : n);
      return SysResult::ok(0);
    }
    case FIONBIO: {
      if (!user_ok(a.a[2], 4)) return EFAULT;
      if (*user_ptr<int32_t>(a.a[2])) f->flags |= O_NONBLOCK;
      else f->flags &= ~O_NONBLOCK;
      return SysResult::ok(0);
    }
    case FIOCLEX: g_rt.files.set_cloexec(static_cast<int64_t>(a.a[0]), true); return SysResult::ok(0);
    case FIONCLEX: g_rt.files.set_cloexec(static_cast<int64_t>(a.a[0]), false); return SysResult::ok(0);
    default: return ENOTTY;  // TCGETS, TIOCGWINSZ, ...: nothing here is a terminal
  }
}

EMBER_SYSCALL(fcntl) {
  const int64_t fd = static_cast<int64_t>(a.a[0]);
  OpenFile* f = g_rt.files.get(fd);
  if (!f) return EBADF;
  switch (static_cast<uint32_t>(a.a[1])) {
    case F_DUPFD: return g_rt.files.dup(fd, static_cast<int64_t>(a.a[2]), false);
    case F_DUPFD_CLOEXEC: return g_rt.files.dup(fd, static_cast<int64_t>(a.a[2]), true);
    case F_GETFD: return SysResult::ok(g_rt.files.cloexec(fd) ? FD_CLOEXEC : 0);
    case F_SETFD: g_rt.files.set_cloexec(fd, a.a[2] & FD_CLOEXEC); return SysResult::ok(0);
    case F_GETFL: return SysResult::ok(f->flags & ~O_DIRECTORY);
    case F_SETFL:
      f->flags = (f->flags & ~(O_APPEND | O_NONBLOCK)) | (static_cast<uint32_t>(a.a[2]) & (O_APPEND | O_NONBLOCK));
      return SysResult::ok(0);
    case F_GETLK: {
      if (!user_ok(a.a[2], 2)) return EFAULT;
      *user_ptr<int16_t>(a.a[2]) = 2;  // l_type = F_UNLCK: nobody else holds locks
      return SysResult::ok(0);
    }
    case F_SETLK:
    case F_SETLKW: return SysResult::ok(0);
    case F_GETPIPE_SZ: return SysResult::ok(65536);
    default: return EINVAL;
  }
}

EMBER_SYSCALL(dup) { return g_rt.files.dup(static_cast<int64_t>(a.a[0]), 0, false); }
EMBER_SYSCALL(dup2) {
  const int64_t fd = static_cast<int64_t>(a.a[0]), nfd = static_cast<int64_t>(a.a[1]);
  if (fd == nfd) return g_rt.files.get(fd) ? SysResult::ok(static_cast<uint64_t>(fd)) : SysResult(EBADF);
  return g_rt.files.dup_to(fd, nfd, false);
}
EMBER_SYSCALL(dup3) {
  const int64_t fd = static_cast<int64_t>(a.a[0]), nfd = static_cast<int64_t>(a.a[1]);
  const uint32_t flags = static_cast<uint32_t>(a.a[2]);
  if (fd == nfd || (flags & ~O_CLOEXEC)) return EINVAL;
  return g_rt.files.dup_to(fd, nfd, flags & O_CLOEXEC);
}

EMBER_SYSCALL(getdents64) {
  OpenFile* f = g_rt.files.get(static_cast<int64_t>(a.a[0]));
  if (!f) return EBADF;
  if (f->kind != FileKind::kDir) return ENOTDIR;
  const uint64_t cap = a.a[2];
  if (!user_ok(a.a[1], cap)) return EFAULT;
  uint8_t* out = user_ptr<uint8_t>(a.a[1]);
  const image::ImageReader& img = g_rt.image;
  const uint32_t plen = f->prefix_len;
  const char* prefix = plen ? img.file(f->index).path.data : "";
  uint64_t used = 0;
  // Cursor: 0 ".", 1 "..", 2 + i: the entry that file i introduces.
  auto emit = [&](const char* name, uint32_t nlen, uint8_t type, uint64_t ino, uint64_t next) -> bool {
    const uint64_t reclen = (19 + nlen + 1 + 7) & ~uint64_t{7};
    if (used + reclen > cap) return false;
    uint8_t* e = out + used;
    memset(e, 0, reclen);
    Dirent64Header h{ino, static_cast<int64_t>(next), static_cast<uint16_t>(reclen), type};
    memcpy(e, &h.d_ino, 8);
    memcpy(e + 8, &h.d_off, 8);
    memcpy(e + 16, &h.d_reclen, 2);
    e[18] = type;
    memcpy(e + 19, name, nlen);
    used += reclen;
    return true;
  };
  while (true) {
    const uint64_t cur = f->offset;
    if (cur == 0 || cur == 1) {
      if (!emit("..", cur == 0 ? 1 : 2, DT_DIR, cur == 0 ? 2 : 2, cur + 1)) break;
      f->offset++;
      continue;
    }
    const uint64_t i = cur - 2;
    if (i >= img.file_count()) break;
    image::Bytes p = img.file(static_cast<uint32_t>(i)).path;
    bool below = p.size > plen + 1 && p.data[plen] == '/' && memcmp(p.data, prefix, plen) == 0;
    if (below) {
      const char* name = p.data + plen + 1;
      uint32_t nlen = 0;
      while (plen + 1 + nlen < p.size && name[nlen] != '/') nlen++;
      const bool is_dir = plen + 1 + nlen < p.size;
      bool seen = false;
      if (is_dir) {  // a subdirectory: listed once, at its first file
        for (uint32_t j = 0; j < i && !seen; j++) {
          image::Bytes q = img.file(j).path;
          seen = q.size > plen + 1 + nlen && memcmp(q.data, p.data, plen + 1 + nlen) == 0 &&
                 q.data[plen + 1 + nlen] == '/';
        }
      }
      if (!seen && !emit(name, nlen, is_dir ? DT_DIR : DT_REG, 16 + i, cur + 1)) {
        if (used == 0) return EINVAL;  // buffer too small for one entry
        break;
      }
    }
    f->offset++;
  }
  return SysResult::ok(used);
}

EMBER_SYSCALL(getcwd) {
  uint32_t len;
  const char* p = dir_path(g_rt.cwd, &len);
  const uint64_t need = (len ? len : 1) + 1;
  if (a.a[1] < need) return ERANGE;
  if (!user_ok(a.a[0], need)) return EFAULT;
  char* out = user_ptr<char>(a.a[0]);
  if (len) memcpy(out, p, len);
  else out[0] = '/', len = 1;
  out[len] = 0;
  return SysResult::ok(need);
}

EMBER_SYSCALL(chdir) {
  char path[kPathMax];
  uint32_t len;
  bool empty;
  SysResult r = resolve_at(AT_FDCWD, a.a[0], path, false, &empty, &len);
  if (r.failed()) return r;
  Lookup l = Files::lookup(path, len);
  if (l.kind == FileKind::kNone) return ENOENT;
  if (l.kind != FileKind::kDir) return ENOTDIR;
  g_rt.cwd = l;
  return SysResult::ok(0);
}

EMBER_SYSCALL(fchdir) {
  OpenFile* f = g_rt.files.get(static_cast<int64_t>(a.a[0]));
  if (!f) return EBADF;
  if (f->kind != FileKind::kDir) return ENOTDIR;
  g_rt.cwd = Lookup{FileKind::kDir, f->index, f->prefix_len};
  return SysResult::ok(0);
}

SysResult do_readlink(int64_t dirfd, uint64_t user_path, uint64_t buf, uint64_t size) {
  char path[kPathMax];
  uint32_t len;
  bool empty;
  SysResult r = resolve_at(dirfd, user_path, path, false, &empty, &len);
  if (r.failed()) return r;
  if (static_cast<int64_t>(size) <= 0) return EINVAL;
  if (str_eq(path, len, "/proc/self/exe")) {
    uint64_t n = g_rt.exec_path_len < size ? g_rt.exec_path_len : size;
    if (!user_ok(buf, n)) return EFAULT;
    memcpy(user_ptr<char>(buf), g_rt.exec_path, n);
    return SysResult::ok(n);
  }
  return Files::lookup(path, len).kind == FileKind::kNone ? ENOENT : EINVAL;  // no symlinks in images
}

EMBER_SYSCALL(readlink) { return do_readlink(AT_FDCWD, a.a[0], a.a[1], a.a[2]); }
EMBER_SYSCALL(readlinkat) { return do_readlink(static_cast<int32_t>(a.a[0]), a.a[1], a.a[2], a.a[3]); }

namespace {

// Fills revents; returns how many fds are ready. *wants_stdin: some fd waits
// for input on stdin.
uint64_t poll_once(Pollfd* fds, uint64_t n, bool* wants_stdin) {
  uint64_t ready = 0;
  *wants_stdin = false;
  for (uint64_t i = 0; i < n; i++) {
    Pollfd& p = fds[i];
    p.revents = 0;
    if (p.fd < 0) continue;
    OpenFile* f = g_rt.files.get(p.fd);
    if (!f) {
      p.revents = POLLNVAL;
    } else if (f->kind == FileKind::kStdin) {
      if (p.events & POLLIN) {
        if (g_stdio.readable()) p.revents = g_stdio.at_eof() ? (POLLIN | POLLHUP) : POLLIN;
        else *wants_stdin = true;
      }
    } else if (f->kind == FileKind::kStdout || f->kind == FileKind::kStderr) {
      p.revents = static_cast<int16_t>(p.events & POLLOUT);
    } else {
      p.revents = static_cast<int16_t>(p.events & (POLLIN | POLLOUT));
    }
    if (p.revents) ready++;
  }
  return ready;
}

// poll(2) on fds[0, n) (already checked), waiting up to timeout_ns.
SysResult poll_fds(Pollfd* fds, uint64_t n, uint64_t timeout_ns /* ~0: forever */) {
  const uint64_t deadline = timeout_ns == ~0ull ? ~0ull : g_rt.clock.monotonic_ns() + timeout_ns;
  while (true) {
    bool wants_stdin;
    uint64_t ready = poll_once(fds, n, &wants_stdin);
    if (ready || timeout_ns == 0) return SysResult::ok(ready);
    if (deadline != ~0ull && g_rt.clock.monotonic_ns() >= deadline) return SysResult::ok(0);
    g_stdio.flush_all();
    if (wants_stdin) {
      g_stdio.wait_readable(deadline);
    } else if (deadline == ~0ull) {
      // Nothing can ever become ready: sleep until the VMM gives up on us.
      static volatile uint16_t never = 0;
      g_platform.wait_word(&never, 0);
    } else {
      g_rt.clock.sleep_until(deadline);
    }
  }
}

SysResult do_poll(uint64_t user_fds, uint64_t n, uint64_t timeout_ns) {
  if (n > static_cast<uint64_t>(Files::kMaxFds)) return EINVAL;
  if (n && !user_ok(user_fds, n * sizeof(Pollfd))) return EFAULT;
  return poll_fds(user_ptr<Pollfd>(user_fds), n, timeout_ns);
}

// select(2) in terms of poll: fd_sets (bit arrays of 64-bit words) in,
// ready bits out.
SysResult do_select(uint64_t nfds, uint64_t rset, uint64_t wset, uint64_t eset, uint64_t timeout_ns) {
  if (static_cast<int64_t>(nfds) < 0 || nfds > static_cast<uint64_t>(Files::kMaxFds)) return EINVAL;
  const uint64_t words = (nfds + 63) / 64;
  uint64_t* sets[3] = {rset ? user_ptr<uint64_t>(rset) : nullptr, wset ? user_ptr<uint64_t>(wset) : nullptr,
                       eset ? user_ptr<uint64_t>(eset) : nullptr};
  for (uint64_t* set : sets)
    if (set && words && !user_ok(reinterpret_cast<uint64_t>(set), words * 8)) return EFAULT;
  Pollfd fds[Files::kMaxFds];
  uint64_t n = 0;
  for (uint64_t fd = 0; fd < nfds; fd++) {
    int16_t ev = 0;
    if (sets[0] && (sets[0][fd / 64] >> (fd % 64) & 1)) ev |= POLLIN;
    if (sets[1] && (sets[1][fd / 64] >> (fd % 64) & 1)) ev |= POLLOUT;
    if (sets[2] && (sets[2][fd / 64] >> (fd % 64) & 1)) ev |= POLLPRI;
    if (ev) fds[n++] = Pollfd{static_cast<int32_t>(fd), ev, 0};
  }
  SysResult r = poll_fds(fds, n, timeout_ns);
  if (r.failed()) return r;
  for (uint64_t* set : sets)
    if (set) memset(set, 0, words * 8);
  uint64_t count = 0;
  for (uint64_t i = 0; i < n; i++) {
    const uint64_t fd = static_cast<uint64_t>(fds[i].fd);
    if (fds[i].revents & POLLNVAL) return EBADF;
    const int16_t re = fds[i].revents;
    if (sets[0] && (re & (POLLIN | POLLHUP | POLLERR)) && (fds[i].events & POLLIN)) sets[0][fd / 64] |= 1ull << (fd % 64), count++;
    if (sets[1] && (re & (POLLOUT | POLLERR)) && (fds[i].events & POLLOUT)) sets[1][fd / 64] |= 1ull << (fd % 64), count++;
    if (sets[2] && (re & POLLPRI)) sets[2][fd / 64] |= 1ull << (fd % 64), count++;
  }
  return SysResult::ok(count);
}

}  // namespace

EMBER_SYSCALL(select) {
  uint64_t timeout = ~0ull;
  if (a.a[4]) {
    if (!user_ok(a.a[4], sizeof(Timeval))) return EFAULT;
    const Timeval* tv = user_ptr<const Timeval>(a.a[4]);
    if (tv->tv_sec < 0 || tv->tv_usec < 0) return EINVAL;
    timeout = static_cast<uint64_t>(tv->tv_sec) * 1000000000ull + static_cast<uint64_t>(tv->tv_usec) * 1000;
  }
  return do_select(a.a[0], a.a[1], a.a[2], a.a[3], timeout);
}

EMBER_SYSCALL(pselect6) {
  uint64_t timeout = ~0ull;
  if (a.a[4]) {
    if (!user_ok(a.a[4], sizeof(Timespec))) return EFAULT;
    const Timespec* ts = user_ptr<const Timespec>(a.a[4]);
    if (ts->tv_sec < 0 || ts->tv_nsec < 0 || ts->tv_nsec >= 1000000000) return EINVAL;
    timeout = static_cast<uint64_t>(ts->tv_sec) * 1000000000ull + static_cast<uint64_t>(ts->tv_nsec);
  }
  return do_select(a.a[0], a.a[1], a.a[2], a.a[3], timeout);
}

EMBER_SYSCALL(poll) {
  const int64_t ms = static_cast<int32_t>(a.a[2]);
  return do_poll(a.a[0], a.a[1], ms < 0 ? ~0ull : static_cast<uint64_t>(ms) * 1000000);
}

EMBER_SYSCALL(ppoll) {
  uint64_t timeout = ~0ull;
  if (a.a[2]) {
    if (!user_ok(a.a[2], sizeof(Timespec))) return EFAULT;
    const Timespec* ts = user_ptr<const Timespec>(a.a[2]);
    if (ts->tv_sec < 0 || ts->tv_nsec < 0 || ts->tv_nsec >= 1000000000) return EINVAL;
    timeout = static_cast<uint64_t>(ts->tv_sec) * 1000000000ull + static_cast<uint64_t>(ts->tv_nsec);
  }
  return do_poll(a.a[0], a.a[1], timeout);
}

EMBER_SYSCALL(fsync) { return g_rt.files.get(static_cast<int64_t>(a.a[0])) ? SysResult::ok(0) : SysResult(EBADF); }
EMBER_SYSCALL(fadvise64) { return g_rt.files.get(static_cast<int64_t>(a.a[0])) ? SysResult::ok(0) : SysResult(EBADF); }
EMBER_SYSCALL(flock) { return g_rt.files.get(static_cast<int64_t>(a.a[0])) ? SysResult::ok(0) : SysResult(EBADF); }
EMBER_SYSCALL(ftruncate) { return g_rt.files.get(static_cast<int64_t>(a.a[0])) ? SysResult(EROFS) : SysResult(EBADF); }

EMBER_SYSCALL(sendfile) {
  // sendfile(out, in, offset*, count): through a bounce buffer on the
  // runtime stack; the output side is a console or /dev/null.
  OpenFile* out = g_rt.files.get(static_cast<int64_t>(a.a[0]));
  OpenFile* in = g_rt.files.get(static_cast<int64_t>(a.a[1]));
  SysResult ok = check_writable(out);
  if (ok.failed()) return ok;
  ok = check_readable(in);
  if (ok.failed()) return ok;
  if (in->kind == FileKind::kDir) return EINVAL;
  uint64_t* off = &in->offset;
  uint64_t explicit_off = 0;
  if (a.a[2]) {
    if (!user_ok(a.a[2], 8)) return EFAULT;
    if (in->kind != FileKind::kFile) return ESPIPE;
    explicit_off = *user_ptr<uint64_t>(a.a[2]);
    off = &explicit_off;
  }
  uint8_t buf[4096];
  uint64_t total = 0, left = a.a[3];
  while (left) {
    SysResult r = read_file(in, buf, left < sizeof buf ? left : sizeof buf, off);
    if (r.failed()) {
      if (total) break;
      flush(out);
      return r;
    }
    if (r.value() == 0) break;
    write_to(out, buf, r.value());
    total += r.value();
    left -= r.value();
    if (in->kind == FileKind::kStdin) break;  // what was there; do not block for more
  }
  flush(out);
  if (a.a[2]) *user_ptr<uint64_t>(a.a[2]) = explicit_off;
  return SysResult::ok(total);
}

namespace {
SysResult fill_statfs(uint64_t buf) {
  if (!user_ok(buf, 120)) return EFAULT;
  uint64_t* s = user_ptr<uint64_t>(buf);
  memset(s, 0, 120);
  s[0] = 0x858458f6;  // f_type: RAMFS_MAGIC
  s[1] = 4096;        // f_bsize
  s[8] = 255;         // f_namelen
  s[9] = 4096;        // f_frsize
  s[10] = 1;          // f_flags: ST_RDONLY
  return SysResult::ok(0);
}
}  // namespace

EMBER_SYSCALL(statfs) {
  char path[kPathMax];
  uint32_t len;
  bool empty;
  SysResult r = resolve_at(AT_FDCWD, a.a[0], path, false, &empty, &len);
  if (r.failed()) return r;
  if (Files::lookup(path, len).kind == FileKind::kNone) return ENOENT;
  return fill_statfs(a.a[1]);
}
EMBER_SYSCALL(fstatfs) {
  if (!g_rt.files.get(static_cast<int64_t>(a.a[0]))) return EBADF;
  return fill_statfs(a.a[1]);
}

}  // namespace ember::guest
