// Path and metadata syscalls: open, stat, access, directories, the working
// directory, links, file systems. The tree is the image's (read-only) with
// the devices of files.h.
#include "api/image_format.h"
#include "guest-init/files.h"
#include "guest-init/klib.h"
#include "guest-init/memfs.h"
#include "guest-init/path.h"
#include "guest-init/procfs.h"
#include "guest-init/runtime.h"
#include "guest-init/syscalls.h"

namespace ember::guest {

using namespace lx;

namespace {

constexpr uint32_t R_OK = 4, W_OK = 2, X_OK = 1;

bool is_dir(FileKind k) { return k == FileKind::kDir || k == FileKind::kSynthDir || k == FileKind::kMemDir; }

// The directory path a Lookup of kind kDir or kSynthDir names ("" for the root).
const char* dir_path(const Lookup& d, uint32_t* len) {
  if (d.kind == FileKind::kSynthDir) {
    const char* p = synth_entry(static_cast<SynthId>(d.index))->path;
    *len = static_cast<uint32_t>(strlen(p));
    return p;
  }
  if (d.kind == FileKind::kMemDir) {  // its path now (it may have been renamed): used at once by the caller
    static char path[kPathMax];
    *len = g_rt.fs.path_of(d.index, path, sizeof path);
    return path;
  }
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
      if (!is_dir(f->kind)) return ENOTDIR;
      Lookup d{f->kind, f->index, f->prefix_len};
      base = dir_path(d, &base_len);
    }
  }
  int32_t len = normalise_path(base, base_len, p, n, out, kPathMax);
  if (len < 0) return ENAMETOOLONG;
  *out_len = static_cast<uint32_t>(len);
  return SysResult::ok(0);
}


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
    case FileKind::kFull:
    case FileKind::kRandom:
      st->st_dev = 3;
      st->st_ino = 8 + static_cast<uint64_t>(f.kind);
      st->st_mode = S_IFCHR | 0666;
      st->st_rdev = f.kind == FileKind::kNull ? 0x103 : f.kind == FileKind::kZero ? 0x105 : f.kind == FileKind::kFull ? 0x107 : 0x109;
      break;
    case FileKind::kSynth:  // as procfs: size 0, read to the end to know
      st->st_dev = 4;
      st->st_ino = 1024 + f.index;
      st->st_mode = S_IFREG | 0444;
      break;
    case FileKind::kSynthDir:
      st->st_dev = 4;
      st->st_ino = 1024 + f.index;
      st->st_mode = S_IFDIR | 0555;
      st->st_nlink = 2;
      break;
    case FileKind::kMemFile:
    case FileKind::kMemDir: {
      const MemFs::Node& n = g_rt.fs.node(f.index);
      st->st_dev = 5;
      st->st_ino = 1 + f.index;
      st->st_mode = (f.kind == FileKind::kMemDir ? S_IFDIR : S_IFREG) | n.mode;
      st->st_nlink = f.kind == FileKind::kMemDir ? 2 : n.linked ? 1 : 0;
      st->st_size = static_cast<int64_t>(f.kind == FileKind::kMemDir ? 4096 : n.size);
      st->st_blocks = static_cast<int64_t>((n.capacity + 511) / 512);
      st->st_atime = st->st_mtime = st->st_ctime = n.mtime_ns / 1000000000ull;
      st->st_atime_nsec = st->st_mtime_nsec = st->st_ctime_nsec = n.mtime_ns % 1000000000ull;
      break;
    }
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

bool is_mem(FileKind k) { return k == FileKind::kMemFile || k == FileKind::kMemDir; }

// What changing something that is not the program's own answers.
Errno not_ours(FileKind k) { return k == FileKind::kSynth || k == FileKind::kSynthDir ? EACCES : EROFS; }

// Why memfs has no directory to hold `path`: what is there instead (none,
// a file, or a directory of the image or of /proc).
Errno no_directory_for(const char* path, uint32_t len) {
  uint32_t slash = 0;
  for (uint32_t i = 0; i < len; i++)
    if (path[i] == '/') slash = i;
  const Lookup parent = slash ? Files::lookup(path, slash) : Lookup{FileKind::kDir, 0, 0};
  if (parent.kind == FileKind::kNone) return ENOENT;
  return is_dir(parent.kind) ? not_ours(parent.kind) : ENOTDIR;
}

// A new memfs node at the normalised path: in a directory of memfs' own or
// in "/"; an image directory is read-only (EROFS).
int32_t create_node(const char* path, uint32_t len, MemFs::Kind kind, uint32_t mode, uint32_t* node) {
  const int32_t e = g_rt.fs.create(path, len, kind, mode & ~g_rt.umask & 07777, g_rt.clock.realtime_ns(), node);
  return e == MemFs::kNoEnt ? no_directory_for(path, len) : e;
}

SysResult open_mem(const Lookup& l, uint32_t flags) {
  SysResult r = g_rt.files.open(open_file_for(l, flags), flags & O_CLOEXEC);
  if (!r.failed()) g_rt.fs.opened(l.index);
  return r;
}

SysResult do_open(int64_t dirfd, uint64_t user_path, uint32_t flags, uint32_t mode) {
  char path[kPathMax];
  uint32_t len;
  bool empty;
  SysResult r = resolve_at(dirfd, user_path, path, false, &empty, &len);
  if (r.failed()) return r;
  Lookup l = Files::lookup(path, len);
  const uint32_t acc = flags & O_ACCMODE;
  if (l.kind == FileKind::kNone) {
    // /dev/fd/N and /proc/self/fd/N: the descriptor N again (Linux reopens
    // the file; for the consoles and pipes here that is the same).
    static const char* const kFdDirs[] = {"/dev/fd/", "/proc/self/fd/"};
    for (const char* prefix : kFdDirs) {
      const uint32_t pl = static_cast<uint32_t>(strlen(prefix));
      if (len <= pl || len > pl + 4 || memcmp(path, prefix, pl) != 0) continue;
      int64_t fd = 0;
      for (uint32_t i = pl; i < len; i++) {
        if (path[i] < '0' || path[i] > '9') return ENOENT;
        fd = fd * 10 + (path[i] - '0');
      }
      if (!g_rt.files.get(fd)) return ENOENT;
      return g_rt.files.dup(fd, 0, flags & O_CLOEXEC);
    }
    if (str_eq(path, len, "/dev/tty")) return ENXIO;  // no controlling terminal
    if (!(flags & O_CREAT)) return ENOENT;
    if (flags & O_DIRECTORY) return EINVAL;
    uint32_t node;
    const int32_t e = create_node(path, len, MemFs::Kind::kFile, mode, &node);
    if (e) return static_cast<Errno>(e);
    l = Lookup{FileKind::kMemFile, node, 0};
    return open_mem(l, flags);
  }
  if ((flags & O_CREAT) && (flags & O_EXCL)) return EEXIST;
  if ((flags & O_TMPFILE) == O_TMPFILE) return l.kind == FileKind::kMemDir ? EOPNOTSUPP : EROFS;
  if (is_dir(l.kind)) {
    if (acc != O_RDONLY) return EISDIR;
  } else if (flags & O_DIRECTORY) {
    return ENOTDIR;
  }
  if (l.kind == FileKind::kFile && (acc != O_RDONLY || (flags & O_TRUNC)) && !(flags & O_PATH)) return EROFS;
  if (l.kind == FileKind::kSynth && acc != O_RDONLY && !(flags & O_PATH)) return EACCES;
  if (l.kind == FileKind::kMemFile || l.kind == FileKind::kMemDir) {
    if (l.kind == FileKind::kMemFile && (flags & O_TRUNC) && acc != O_RDONLY)
      (void)g_rt.fs.truncate(l.index, 0, g_rt.clock.realtime_ns());
    return open_mem(l, flags);
  }
  return g_rt.files.open(open_file_for(l, flags), flags & O_CLOEXEC);
}


bool wants_write_bits(uint32_t mode) { return mode & W_OK; }

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
  if (wants_write_bits(mode) && (l.kind == FileKind::kFile || l.kind == FileKind::kDir) && !(l.kind == FileKind::kDir && l.prefix_len == 0))
    return EROFS;
  if (wants_write_bits(mode) && (l.kind == FileKind::kSynth || l.kind == FileKind::kSynthDir)) return EACCES;
  if ((mode & X_OK) && l.kind == FileKind::kFile && !(g_rt.image.file(l.index).mode & 0111)) return EACCES;
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

EMBER_SYSCALL_DEFINE(open, uint64_t pathname, uint32_t flags, uint32_t mode) {
  return do_open(AT_FDCWD, pathname, flags, mode);
}
EMBER_SYSCALL_DEFINE(openat, int dirfd, uint64_t pathname, uint32_t flags, uint32_t mode) {
  return do_open(dirfd, pathname, flags, mode);
}
EMBER_SYSCALL_DEFINE(creat, uint64_t pathname, uint32_t mode) {
  return do_open(AT_FDCWD, pathname, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

EMBER_SYSCALL_DEFINE(fstat, int fd, uint64_t statbuf) {
  OpenFile* f = g_rt.files.get(fd);
  if (!f) return EBADF;
  if (!user_ok(statbuf, sizeof(Stat))) return EFAULT;
  fill_stat(*f, user_ptr<Stat>(statbuf));
  return SysResult::ok(0);
}

EMBER_SYSCALL_DEFINE(newfstatat, int dirfd, uint64_t pathname, uint64_t statbuf, uint32_t flags) {
  if (!user_ok(statbuf, sizeof(Stat))) return EFAULT;
  char path[kPathMax];
  uint32_t len = 0;
  bool empty;
  SysResult r = resolve_at(dirfd, pathname, path, flags & AT_EMPTY_PATH, &empty, &len);
  if (r.failed()) return r;
  if (empty) {
    OpenFile* f = dirfd == AT_FDCWD ? nullptr : g_rt.files.get(dirfd);
    if (dirfd == AT_FDCWD) {
      OpenFile cwd = open_file_for(g_rt.cwd, O_RDONLY);
      fill_stat(cwd, user_ptr<Stat>(statbuf));
      return SysResult::ok(0);
    }
    if (!f) return EBADF;
    fill_stat(*f, user_ptr<Stat>(statbuf));
    return SysResult::ok(0);
  }
  Lookup l = Files::lookup(path, len);
  if (l.kind == FileKind::kNone) return ENOENT;
  fill_stat(open_file_for(l, O_RDONLY), user_ptr<Stat>(statbuf));
  return SysResult::ok(0);
}

EMBER_SYSCALL_DEFINE(stat, uint64_t pathname, uint64_t statbuf) { return sys_newfstatat_typed(AT_FDCWD, pathname, statbuf, 0); }
EMBER_SYSCALL_DEFINE(lstat, uint64_t pathname, uint64_t statbuf) {  // the image has no symlinks
  return sys_newfstatat_typed(AT_FDCWD, pathname, statbuf, 0);
}

EMBER_SYSCALL_DEFINE(statx) { return ENOSYS; }  // libcs fall back to newfstatat


EMBER_SYSCALL_DEFINE(access, uint64_t pathname, uint32_t mode) { return do_access(AT_FDCWD, pathname, mode, 0); }
EMBER_SYSCALL_DEFINE(faccessat, int dirfd, uint64_t pathname, uint32_t mode) {
  return do_access(dirfd, pathname, mode, 0);
}
EMBER_SYSCALL_DEFINE(faccessat2, int dirfd, uint64_t pathname, uint32_t mode, uint32_t flags) {
  return do_access(dirfd, pathname, mode,
                   flags);
}


EMBER_SYSCALL_DEFINE(getdents64, int fd, uint64_t dirp, uint32_t count) {
  OpenFile* f = g_rt.files.get(fd);
  if (!f) return EBADF;
  if (!is_dir(f->kind)) return ENOTDIR;
  const uint64_t cap = count;
  if (!user_ok(dirp, cap)) return EFAULT;
  uint8_t* out = user_ptr<uint8_t>(dirp);
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
    // A memfs directory's entries, a synthetic directory's; after the
    // image's, the root's synthetic directories (/proc, /sys, /dev) that
    // the image lacks, then what the program made in "/".
    if (f->kind == FileKind::kSynthDir || f->kind == FileKind::kMemDir || i >= img.file_count()) {
      const char* name = nullptr;
      uint32_t nlen = 0;
      uint8_t type = DT_REG;
      uint64_t ino = 0;
      bool shadowed = false;
      const uint64_t j = f->kind == FileKind::kDir ? i - img.file_count() : i;
      const uint64_t synth_at_root = f->kind == FileKind::kDir && plen == 0 ? synth_root_count() : 0;
      if (f->kind == FileKind::kSynthDir ||
          (f->kind == FileKind::kDir && plen == 0 && j < synth_at_root)) {
        const SynthEntry* e = f->kind == FileKind::kSynthDir
                                  ? synth_child(static_cast<SynthId>(f->index), static_cast<uint32_t>(j), &name, &nlen)
                                  : synth_root_child(static_cast<uint32_t>(j), &name, &nlen);
        if (!e) break;
        type = e->dir ? DT_DIR : e->id == SynthId::kDevice ? DT_CHR : DT_REG;
        ino = 1024 + static_cast<uint64_t>(e->id);
        shadowed = f->kind == FileKind::kDir && Files::lookup(e->path, static_cast<uint32_t>(strlen(e->path))).kind != FileKind::kSynthDir;
      } else if (f->kind == FileKind::kMemDir || (f->kind == FileKind::kDir && plen == 0)) {
        const uint32_t dir = f->kind == FileKind::kMemDir ? f->index : 1;  // memfs' root is "/"
        const uint32_t node = g_rt.fs.child(dir, static_cast<uint32_t>(j - synth_at_root));
        if (!node) break;
        const MemFs::Node& n = g_rt.fs.node(node);
        name = n.name;
        nlen = n.name_len;
        type = n.kind == MemFs::Kind::kDir ? DT_DIR : DT_REG;
        ino = 1 + node;
      } else {
        break;
      }
      if (!shadowed && !emit(name, nlen, type, ino, cur + 1)) {
        if (used == 0) return EINVAL;
        break;
      }
      f->offset++;
      continue;
    }
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

EMBER_SYSCALL_DEFINE(getcwd, uint64_t buf, uint64_t size) {
  uint32_t len;
  const char* p = dir_path(g_rt.cwd, &len);
  const uint64_t need = (len ? len : 1) + 1;
  if (size < need) return ERANGE;
  if (!user_ok(buf, need)) return EFAULT;
  char* out = user_ptr<char>(buf);
  if (len) memcpy(out, p, len);
  else out[0] = '/', len = 1;
  out[len] = 0;
  return SysResult::ok(need);
}

EMBER_SYSCALL_DEFINE(chdir, uint64_t pathname) {
  char path[kPathMax];
  uint32_t len;
  bool empty;
  SysResult r = resolve_at(AT_FDCWD, pathname, path, false, &empty, &len);
  if (r.failed()) return r;
  Lookup l = Files::lookup(path, len);
  if (l.kind == FileKind::kNone) return ENOENT;
  if (!is_dir(l.kind)) return ENOTDIR;
  g_rt.cwd = l;
  return SysResult::ok(0);
}

EMBER_SYSCALL_DEFINE(fchdir, int fd) {
  OpenFile* f = g_rt.files.get(fd);
  if (!f) return EBADF;
  if (!is_dir(f->kind)) return ENOTDIR;
  g_rt.cwd = Lookup{f->kind, f->index, f->prefix_len};
  return SysResult::ok(0);
}


EMBER_SYSCALL_DEFINE(readlink, uint64_t pathname, uint64_t buf, int bufsiz) { return do_readlink(AT_FDCWD, pathname, buf, bufsiz); }
EMBER_SYSCALL_DEFINE(readlinkat, int dirfd, uint64_t pathname, uint64_t buf, int bufsiz) { return do_readlink(dirfd, pathname, buf, bufsiz); }


EMBER_SYSCALL_DEFINE(statfs, uint64_t pathname, uint64_t buf) {
  char path[kPathMax];
  uint32_t len;
  bool empty;
  SysResult r = resolve_at(AT_FDCWD, pathname, path, false, &empty, &len);
  if (r.failed()) return r;
  if (Files::lookup(path, len).kind == FileKind::kNone) return ENOENT;
  return fill_statfs(buf);
}
EMBER_SYSCALL_DEFINE(fstatfs, int fd, uint64_t buf) {
  if (!g_rt.files.get(fd)) return EBADF;
  return fill_statfs(buf);
}


// ------------------------------------------------------------------ writable files (memfs.h)

namespace {

// A path argument: its normalised absolute form and what is there now.
struct PathArg {
  char path[kPathMax];
  uint32_t len = 0;
  Lookup l;
};

SysResult path_arg(int64_t dirfd, uint64_t user, PathArg* p) {
  bool empty;
  SysResult r = resolve_at(dirfd, user, p->path, false, &empty, &p->len);
  if (r.failed()) return r;
  p->l = Files::lookup(p->path, p->len);
  return SysResult::ok(0);
}

SysResult done(int32_t e) { return e ? SysResult(static_cast<Errno>(e)) : SysResult::ok(0); }

SysResult do_mkdir(int64_t dirfd, uint64_t user, uint32_t mode) {
  PathArg p;
  SysResult r = path_arg(dirfd, user, &p);
  if (r.failed()) return r;
  if (p.l.kind != FileKind::kNone) return EEXIST;
  uint32_t node;
  return done(create_node(p.path, p.len, MemFs::Kind::kDir, mode, &node));
}

SysResult do_unlink(int64_t dirfd, uint64_t user, bool dir) {
  PathArg p;
  SysResult r = path_arg(dirfd, user, &p);
  if (r.failed()) return r;
  if (p.l.kind == FileKind::kNone) return ENOENT;
  if (is_mem(p.l.kind)) return done(g_rt.fs.remove(p.path, p.len, dir));
  if (dir && !is_dir(p.l.kind)) return ENOTDIR;
  if (!dir && is_dir(p.l.kind)) return EISDIR;
  if (p.len == 1) return EBUSY;  // "/"
  return not_ours(p.l.kind);
}

SysResult do_rename(int64_t olddir, uint64_t oldp, int64_t newdir, uint64_t newp, uint32_t flags) {
  if (flags & ~RENAME_NOREPLACE) return EINVAL;  // RENAME_EXCHANGE and RENAME_WHITEOUT: not here
  PathArg a, b;
  SysResult r = path_arg(olddir, oldp, &a);
  if (r.failed()) return r;
  r = path_arg(newdir, newp, &b);
  if (r.failed()) return r;
  if (a.l.kind == FileKind::kNone) return ENOENT;
  if (!is_mem(a.l.kind)) return not_ours(a.l.kind);
  if (b.l.kind != FileKind::kNone && !is_mem(b.l.kind)) return (flags & RENAME_NOREPLACE) ? EEXIST : not_ours(b.l.kind);
  const int32_t e = g_rt.fs.rename(a.path, a.len, b.path, b.len, flags & RENAME_NOREPLACE, g_rt.clock.realtime_ns());
  return e == MemFs::kNoEnt ? SysResult(no_directory_for(b.path, b.len)) : done(e);
}

SysResult do_chmod(const Lookup& l, uint32_t mode) {
  if (l.kind == FileKind::kNone) return ENOENT;
  if (!is_mem(l.kind)) return l.kind == FileKind::kStdin || l.kind == FileKind::kStdout || l.kind == FileKind::kStderr
                                 ? SysResult::ok(0)
                                 : SysResult(not_ours(l.kind));
  g_rt.fs.set_mode(l.index, mode);
  return SysResult::ok(0);
}

}  // namespace

EMBER_SYSCALL_DEFINE(mkdir, uint64_t pathname, uint32_t mode) { return do_mkdir(AT_FDCWD, pathname, mode); }
EMBER_SYSCALL_DEFINE(mkdirat, int dirfd, uint64_t pathname, uint32_t mode) { return do_mkdir(dirfd, pathname, mode); }
EMBER_SYSCALL_DEFINE(unlink, uint64_t pathname) { return do_unlink(AT_FDCWD, pathname, false); }
EMBER_SYSCALL_DEFINE(rmdir, uint64_t pathname) { return do_unlink(AT_FDCWD, pathname, true); }
EMBER_SYSCALL_DEFINE(unlinkat, int dirfd, uint64_t pathname, uint32_t flags) {
  if (flags & ~AT_REMOVEDIR) return EINVAL;
  return do_unlink(dirfd, pathname, flags & AT_REMOVEDIR);
}
EMBER_SYSCALL_DEFINE(rename, uint64_t oldpath, uint64_t newpath) {
  return do_rename(AT_FDCWD, oldpath, AT_FDCWD, newpath, 0);
}
EMBER_SYSCALL_DEFINE(renameat, int olddirfd, uint64_t oldpath, int newdirfd, uint64_t newpath) {
  return do_rename(olddirfd, oldpath, newdirfd, newpath, 0);
}
EMBER_SYSCALL_DEFINE(renameat2, int olddirfd, uint64_t oldpath, int newdirfd, uint64_t newpath, uint32_t flags) {
  return do_rename(olddirfd, oldpath, newdirfd, newpath, flags);
}

EMBER_SYSCALL_DEFINE(truncate, uint64_t pathname, int64_t length) {
  if (length < 0) return EINVAL;
  PathArg p;
  SysResult r = path_arg(AT_FDCWD, pathname, &p);
  if (r.failed()) return r;
  if (p.l.kind == FileKind::kNone) return ENOENT;
  if (is_dir(p.l.kind)) return EISDIR;
  if (p.l.kind != FileKind::kMemFile) return not_ours(p.l.kind);
  return done(g_rt.fs.truncate(p.l.index, static_cast<uint64_t>(length), g_rt.clock.realtime_ns()));
}

EMBER_SYSCALL_DEFINE(chmod, uint64_t pathname, uint32_t mode) {
  PathArg p;
  SysResult r = path_arg(AT_FDCWD, pathname, &p);
  return r.failed() ? r : do_chmod(p.l, mode);
}
EMBER_SYSCALL_DEFINE(fchmodat, int dirfd, uint64_t pathname, uint32_t mode) {
  PathArg p;
  SysResult r = path_arg(dirfd, pathname, &p);
  return r.failed() ? r : do_chmod(p.l, mode);
}
EMBER_SYSCALL_DEFINE(fchmod, int fd, uint32_t mode) {
  OpenFile* f = g_rt.files.get(fd);
  if (!f) return EBADF;
  return do_chmod(Lookup{f->kind, f->index, f->prefix_len}, mode);
}

// utimensat(dirfd, path, times, flags); a NULL path: dirfd itself (futimens).
EMBER_SYSCALL_DEFINE(utimensat, int dirfd, uint64_t pathname, uint64_t times) {
  Lookup l;
  if (pathname == 0) {
    OpenFile* f = g_rt.files.get(dirfd);
    if (!f) return EBADF;
    l = Lookup{f->kind, f->index, f->prefix_len};
  } else {
    PathArg p;
    SysResult r = path_arg(dirfd, pathname, &p);
    if (r.failed()) return r;
    l = p.l;
  }
  if (l.kind == FileKind::kNone) return ENOENT;
  if (!is_mem(l.kind)) return not_ours(l.kind);
  uint64_t ns = g_rt.clock.realtime_ns();
  if (times) {
    if (!user_ok(times, 2 * sizeof(Timespec))) return EFAULT;
    const Timespec& mt = user_ptr<const Timespec>(times)[1];
    constexpr int64_t kUtimeNow = (1 << 30) - 1, kUtimeOmit = (1 << 30) - 2;
    if (mt.tv_nsec == kUtimeOmit) return SysResult::ok(0);
    if (mt.tv_nsec != kUtimeNow) {
      if (mt.tv_sec < 0 || mt.tv_nsec < 0 || mt.tv_nsec >= 1000000000) return EINVAL;
      ns = static_cast<uint64_t>(mt.tv_sec) * 1000000000ull + static_cast<uint64_t>(mt.tv_nsec);
    }
  }
  g_rt.fs.set_mtime(l.index, ns);
  return SysResult::ok(0);
}

}  // namespace ember::guest
