// Stream and descriptor syscalls: reading and writing (consoles, image
// files, /dev/null & co.), seeking, descriptor flags and copies, waiting
// (poll, select), sendfile.
#include "guest-init/files.h"
#include "guest-init/klib.h"
#include "guest-init/platform.h"
#include "guest-init/procfs.h"
#include "guest-init/runtime.h"
#include "guest-init/stdio.h"
#include "guest-init/syscalls.h"

namespace ember::guest {

using namespace lx;

namespace {

constexpr uint32_t kIovMax = 1024;
constexpr uint64_t kSynthMax = 8192;  // the longest text a synthetic file renders (procfs.h)

// The program's iovec array, or null: more than kIovMax entries (EINVAL) or
// not in its memory (EFAULT).
const Iovec* user_iovec(uint64_t addr, uint64_t count) {
  if (count > kIovMax || !user_ok(addr, count * sizeof(Iovec))) return nullptr;
  return user_ptr<const Iovec>(addr);
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
    case FileKind::kZero:
    case FileKind::kFull: memset(buf, 0, n); return SysResult::ok(n);
    case FileKind::kSynth: {
      // Rendered afresh at each read: the text as of now, from *offset.
      char text[kSynthMax];
      const uint64_t size = synth_render(static_cast<SynthId>(f->index), text, sizeof text);
      if (*offset >= size) return SysResult::ok(0);
      const uint64_t take = size - *offset < n ? size - *offset : n;
      memcpy(buf, text + *offset, take);
      *offset += take;
      return SysResult::ok(take);
    }
    case FileKind::kSynthDir:
    case FileKind::kMemDir: return EISDIR;
    case FileKind::kMemFile: {
      const uint64_t got = g_rt.fs.read(f->index, *offset, buf, n);
      *offset += got;
      return SysResult::ok(got);
    }
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
  if (f->kind == FileKind::kFile || f->kind == FileKind::kDir || f->kind == FileKind::kStdin ||
      f->kind == FileKind::kSynth || f->kind == FileKind::kSynthDir || f->kind == FileKind::kMemDir)
    return EBADF;
  if (f->kind == FileKind::kFull) return ENOSPC;
  return SysResult::ok(0);
}

// One write: to a console (buffered until flush), a memfs file (at
// *offset, or at its end with O_APPEND when *offset is the description's
// own), or nowhere (/dev/null). The bytes written.
SysResult write_file(OpenFile* f, const uint8_t* data, uint64_t n, uint64_t* offset) {
  if (f->kind == FileKind::kStdout || f->kind == FileKind::kStderr) {
    g_stdio.append(stream_of(f->kind), data, n);
    return SysResult::ok(n);
  }
  if (f->kind != FileKind::kMemFile) return SysResult::ok(n);
  if ((f->flags & O_APPEND) && offset == &f->offset) *offset = g_rt.fs.node(f->index).size;
  const int64_t w = g_rt.fs.write(f->index, *offset, data, n, g_rt.clock.realtime_ns());
  if (w < 0) return static_cast<Errno>(-w);
  *offset += static_cast<uint64_t>(w);
  return SysResult::ok(static_cast<uint64_t>(w));
}
void flush(OpenFile* f) {
  if (f->kind == FileKind::kStdout || f->kind == FileKind::kStderr) g_stdio.commit(stream_of(f->kind));
}

}  // namespace

EMBER_SYSCALL_DEFINE(read, int fd, uint64_t buf, uint64_t count) {
  OpenFile* f = g_rt.files.get(fd);
  SysResult ok = check_readable(f);
  if (ok.failed()) return ok;
  if (count == 0) return SysResult::ok(0);
  if (!user_ok(buf, count)) return EFAULT;
  return read_file(f, user_ptr<uint8_t>(buf), count, &f->offset);
}

EMBER_SYSCALL_DEFINE(pread64, int fd, uint64_t buf, uint64_t count, int64_t pos) {
  OpenFile* f = g_rt.files.get(fd);
  SysResult ok = check_readable(f);
  if (ok.failed()) return ok;
  if (f->kind == FileKind::kStdin || f->kind == FileKind::kStdout || f->kind == FileKind::kStderr) return ESPIPE;
  if (pos < 0) return EINVAL;
  if (count == 0) return SysResult::ok(0);
  if (!user_ok(buf, count)) return EFAULT;
  uint64_t off = static_cast<uint64_t>(pos);
  return read_file(f, user_ptr<uint8_t>(buf), count, &off);
}

EMBER_SYSCALL_DEFINE(readv, int fd, uint64_t iov_addr, uint64_t iovcnt) {
  OpenFile* f = g_rt.files.get(fd);
  SysResult ok = check_readable(f);
  if (ok.failed()) return ok;
  const Iovec* iov = user_iovec(iov_addr, iovcnt);
  if (!iov) return iovcnt > kIovMax ? EINVAL : EFAULT;
  uint64_t total = 0;
  for (uint64_t i = 0; i < iovcnt; i++) {
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

EMBER_SYSCALL_DEFINE(write, int fd, uint64_t buf, uint64_t count) {
  OpenFile* f = g_rt.files.get(fd);
  SysResult ok = check_writable(f);
  if (ok.failed()) return ok;
  if (count == 0) return SysResult::ok(0);
  if (!user_ok(buf, count)) return EFAULT;
  SysResult r = write_file(f, user_ptr<const uint8_t>(buf), count, &f->offset);
  flush(f);
  return r;
}

EMBER_SYSCALL_DEFINE(pwrite64, int fd, uint64_t buf, uint64_t count, int64_t pos) {
  OpenFile* f = g_rt.files.get(fd);
  if (!f) return EBADF;
  if (f->kind == FileKind::kStdout || f->kind == FileKind::kStderr || f->kind == FileKind::kStdin) return ESPIPE;
  SysResult ok = check_writable(f);
  if (ok.failed()) return ok;
  if (pos < 0) return EINVAL;
  if (count == 0) return SysResult::ok(0);
  if (!user_ok(buf, count)) return EFAULT;
  uint64_t off = static_cast<uint64_t>(pos);  // pwrite ignores O_APPEND's end here (Linux appends; rare)
  return write_file(f, user_ptr<const uint8_t>(buf), count, &off);
}

EMBER_SYSCALL_DEFINE(writev, int fd, uint64_t iov_addr, uint64_t iovcnt) {
  OpenFile* f = g_rt.files.get(fd);
  SysResult ok = check_writable(f);
  if (ok.failed()) return ok;
  const Iovec* iov = user_iovec(iov_addr, iovcnt);
  if (!iov) return iovcnt > kIovMax ? EINVAL : EFAULT;
  uint64_t total = 0;
  for (uint64_t i = 0; i < iovcnt; i++) {
    if (iov[i].len == 0) continue;
    if (!user_ok(iov[i].base, iov[i].len)) {
      flush(f);
      return total ? SysResult::ok(total) : SysResult(EFAULT);
    }
    SysResult r = write_file(f, user_ptr<const uint8_t>(iov[i].base), iov[i].len, &f->offset);
    if (r.failed()) {
      flush(f);
      return total ? SysResult::ok(total) : r;
    }
    total += r.value();
  }
  flush(f);  // one notify decision for all the pieces
  return SysResult::ok(total);
}

EMBER_SYSCALL_DEFINE(close, int fd) { return g_rt.files.close(fd); }

EMBER_SYSCALL_DEFINE(lseek, int fd, int64_t off, uint32_t whence) {
  OpenFile* f = g_rt.files.get(fd);
  if (!f) return EBADF;
  switch (f->kind) {
    case FileKind::kStdin:
    case FileKind::kStdout:
    case FileKind::kStderr: return ESPIPE;
    case FileKind::kNull:
    case FileKind::kZero:
    case FileKind::kFull:
    case FileKind::kRandom: return SysResult::ok(0);
    case FileKind::kSynthDir:
    case FileKind::kMemDir:
    case FileKind::kDir:
      if (whence == SEEK_SET && off >= 0) {
        f->offset = static_cast<uint64_t>(off);
        return SysResult::ok(f->offset);
      }
      return EINVAL;
    default: break;
  }
  int64_t size;
  if (f->kind == FileKind::kSynth) {
    char text[kSynthMax];
    size = static_cast<int64_t>(synth_render(static_cast<SynthId>(f->index), text, sizeof text));
  } else if (f->kind == FileKind::kMemFile) {
    size = static_cast<int64_t>(g_rt.fs.node(f->index).size);
  } else {
    size = static_cast<int64_t>(g_rt.image.file(f->index).size);
  }
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

EMBER_SYSCALL_DEFINE(ioctl, int fd, uint32_t cmd, uint64_t arg) {
  OpenFile* f = g_rt.files.get(fd);
  if (!f) return EBADF;
  switch (cmd) {
    case FIONREAD: {
      if (!user_ok(arg, 4)) return EFAULT;
      uint64_t n = 0;
      if (f->kind == FileKind::kStdin) {
        g_stdio.readable();
        n = g_stdio.buffered();
      } else if (f->kind == FileKind::kFile) {
        uint64_t size = g_rt.image.file(f->index).size;
        n = f->offset < size ? size - f->offset : 0;
      }
      *user_ptr<int32_t>(arg) = static_cast<int32_t>(n > 0x7fffffff ? 0x7fffffff : n);
      return SysResult::ok(0);
    }
    case FIONBIO: {
      if (!user_ok(arg, 4)) return EFAULT;
      if (*user_ptr<int32_t>(arg)) f->flags |= O_NONBLOCK;
      else f->flags &= ~O_NONBLOCK;
      return SysResult::ok(0);
    }
    case FIOCLEX: g_rt.files.set_cloexec(fd, true); return SysResult::ok(0);
    case FIONCLEX: g_rt.files.set_cloexec(fd, false); return SysResult::ok(0);
    default: return ENOTTY;  // TCGETS, TIOCGWINSZ, ...: nothing here is a terminal
  }
}

EMBER_SYSCALL_DEFINE(fcntl, int fd, uint32_t cmd, uint64_t arg) {
  OpenFile* f = g_rt.files.get(fd);
  if (!f) return EBADF;
  switch (cmd) {
    case F_DUPFD: return g_rt.files.dup(fd, static_cast<int64_t>(arg), false);
    case F_DUPFD_CLOEXEC: return g_rt.files.dup(fd, static_cast<int64_t>(arg), true);
    case F_GETFD: return SysResult::ok(g_rt.files.cloexec(fd) ? FD_CLOEXEC : 0);
    case F_SETFD: g_rt.files.set_cloexec(fd, arg & FD_CLOEXEC); return SysResult::ok(0);
    case F_GETFL: return SysResult::ok(f->flags & ~O_DIRECTORY);
    case F_SETFL:
      f->flags = (f->flags & ~(O_APPEND | O_NONBLOCK)) | (static_cast<uint32_t>(arg) & (O_APPEND | O_NONBLOCK));
      return SysResult::ok(0);
    case F_GETLK: {
      if (!user_ok(arg, 2)) return EFAULT;
      *user_ptr<int16_t>(arg) = 2;  // l_type = F_UNLCK: nobody else holds locks
      return SysResult::ok(0);
    }
    case F_SETLK:
    case F_SETLKW: return SysResult::ok(0);
    case F_GETPIPE_SZ: return SysResult::ok(65536);
    default: return EINVAL;
  }
}

EMBER_SYSCALL_DEFINE(dup, int fd) { return g_rt.files.dup(fd, 0, false); }
EMBER_SYSCALL_DEFINE(dup2, int fd, int nfd) {
  if (fd == nfd) return g_rt.files.get(fd) ? SysResult::ok(static_cast<uint64_t>(fd)) : SysResult(EBADF);
  return g_rt.files.dup_to(fd, nfd, false);
}
EMBER_SYSCALL_DEFINE(dup3, int fd, int nfd, uint32_t flags) {
  if (fd == nfd || (flags & ~O_CLOEXEC)) return EINVAL;
  return g_rt.files.dup_to(fd, nfd, flags & O_CLOEXEC);
}

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

EMBER_SYSCALL_DEFINE(select, int nfds, uint64_t rset, uint64_t wset, uint64_t eset, uint64_t timeout_addr) {
  uint64_t timeout = ~0ull;
  if (timeout_addr) {
    if (!user_ok(timeout_addr, sizeof(Timeval))) return EFAULT;
    const Timeval* tv = user_ptr<const Timeval>(timeout_addr);
    if (tv->tv_sec < 0 || tv->tv_usec < 0) return EINVAL;
    timeout = static_cast<uint64_t>(tv->tv_sec) * 1000000000ull + static_cast<uint64_t>(tv->tv_usec) * 1000;
  }
  return do_select(nfds, rset, wset, eset, timeout);
}

EMBER_SYSCALL_DEFINE(pselect6, int nfds, uint64_t rset, uint64_t wset, uint64_t eset, uint64_t timeout_addr) {
  uint64_t timeout = ~0ull;
  if (timeout_addr) {
    if (!user_ok(timeout_addr, sizeof(Timespec))) return EFAULT;
    const Timespec* ts = user_ptr<const Timespec>(timeout_addr);
    if (ts->tv_sec < 0 || ts->tv_nsec < 0 || ts->tv_nsec >= 1000000000) return EINVAL;
    timeout = static_cast<uint64_t>(ts->tv_sec) * 1000000000ull + static_cast<uint64_t>(ts->tv_nsec);
  }
  return do_select(nfds, rset, wset, eset, timeout);
}

EMBER_SYSCALL_DEFINE(poll, uint64_t fds, uint64_t nfds, int timeout_ms) {
  return do_poll(fds, nfds, timeout_ms < 0 ? ~0ull : static_cast<uint64_t>(timeout_ms) * 1000000);
}

EMBER_SYSCALL_DEFINE(ppoll, uint64_t fds, uint64_t nfds, uint64_t timeout_addr) {
  uint64_t timeout = ~0ull;
  if (timeout_addr) {
    if (!user_ok(timeout_addr, sizeof(Timespec))) return EFAULT;
    const Timespec* ts = user_ptr<const Timespec>(timeout_addr);
    if (ts->tv_sec < 0 || ts->tv_nsec < 0 || ts->tv_nsec >= 1000000000) return EINVAL;
    timeout = static_cast<uint64_t>(ts->tv_sec) * 1000000000ull + static_cast<uint64_t>(ts->tv_nsec);
  }
  return do_poll(fds, nfds, timeout);
}

EMBER_SYSCALL_DEFINE(fsync, int fd) { return g_rt.files.get(fd) ? SysResult::ok(0) : SysResult(EBADF); }
EMBER_SYSCALL_DEFINE(fadvise64, int fd) { return g_rt.files.get(fd) ? SysResult::ok(0) : SysResult(EBADF); }
EMBER_SYSCALL_DEFINE(flock, int fd) { return g_rt.files.get(fd) ? SysResult::ok(0) : SysResult(EBADF); }
EMBER_SYSCALL_DEFINE(ftruncate, int fd, int64_t length) {
  OpenFile* f = g_rt.files.get(fd);
  if (!f) return EBADF;
  if (length < 0) return EINVAL;
  if (f->kind != FileKind::kMemFile) return f->kind == FileKind::kFile ? SysResult(EROFS) : SysResult(EINVAL);
  if ((f->flags & O_ACCMODE) == O_RDONLY) return EINVAL;  // as Linux: not open for writing
  const int32_t e = g_rt.fs.truncate(f->index, static_cast<uint64_t>(length), g_rt.clock.realtime_ns());
  return e ? SysResult(static_cast<Errno>(e)) : SysResult::ok(0);
}

EMBER_SYSCALL_DEFINE(sendfile, int out_fd, int in_fd, uint64_t offset_addr, uint64_t count) {
  // sendfile(out, in, offset*, count): through a bounce buffer on the
  // runtime stack; the output side is a console or /dev/null.
  OpenFile* out = g_rt.files.get(out_fd);
  OpenFile* in = g_rt.files.get(in_fd);
  SysResult ok = check_writable(out);
  if (ok.failed()) return ok;
  ok = check_readable(in);
  if (ok.failed()) return ok;
  if (in->kind == FileKind::kDir) return EINVAL;
  uint64_t* off = &in->offset;
  uint64_t explicit_off = 0;
  if (offset_addr) {
    if (!user_ok(offset_addr, 8)) return EFAULT;
    if (in->kind != FileKind::kFile && in->kind != FileKind::kMemFile) return ESPIPE;
    explicit_off = *user_ptr<uint64_t>(offset_addr);
    off = &explicit_off;
  }
  uint8_t buf[4096];
  uint64_t total = 0, left = count;
  while (left) {
    SysResult r = read_file(in, buf, left < sizeof buf ? left : sizeof buf, off);
    if (r.failed()) {
      if (total) break;
      flush(out);
      return r;
    }
    if (r.value() == 0) break;
    SysResult w = write_file(out, buf, r.value(), &out->offset);
    if (w.failed()) {
      flush(out);
      return total ? SysResult::ok(total) : w;
    }
    total += r.value();
    left -= r.value();
    if (in->kind == FileKind::kStdin) break;  // what was there; do not block for more
  }
  flush(out);
  if (offset_addr) *user_ptr<uint64_t>(offset_addr) = explicit_off;
  return SysResult::ok(total);
}

}  // namespace ember::guest
