// File descriptors: the three consoles, read-only files and directories of
// the image, a few devices (/dev/null, /dev/zero, /dev/full, /dev/urandom)
// and the synthetic files of /proc and /sys (procfs.h).
// Descriptors point to shared open-file descriptions (offset, flags), so
// dup() behaves as on Linux.
#pragma once

#include <stdint.h>

#include "guest-init/linux_abi.h"
#include "guest-init/syscalls.h"

namespace ember::guest {

// kSynth/kSynthDir: procfs.h's files and directories (index: their SynthId);
// kMemFile/kMemDir: memfs.h's writable ones (index: the node).
enum class FileKind : uint8_t {
  kNone, kStdin, kStdout, kStderr, kFile, kDir, kNull, kZero, kFull, kRandom, kSynth, kSynthDir, kMemFile, kMemDir,
};

struct OpenFile {
  FileKind kind = FileKind::kNone;
  uint32_t refs = 0;
  uint32_t flags = 0;       // O_ACCMODE | O_APPEND | O_NONBLOCK ...
  uint64_t offset = 0;      // files: byte offset; directories: entry cursor
  uint32_t index = 0;       // image file index (files; directories: a file inside it)
  uint32_t prefix_len = 0;  // directories: the directory path = file(index).path[0, prefix_len)
};

// What a normalised absolute path names.
struct Lookup {
  FileKind kind = FileKind::kNone;  // kNone: does not exist
  uint32_t index = 0;
  uint32_t prefix_len = 0;
};

class Files {
 public:
  static constexpr int kMaxFds = 1024;
  static constexpr int kMaxOpen = 256;

  void init();  // fds 0, 1, 2
  OpenFile* get(int64_t fd);
  // A new descriptor (lowest free >= min_fd) for a new description.
  SysResult open(const OpenFile& f, bool cloexec);
  SysResult close(int64_t fd);
  SysResult dup(int64_t fd, int64_t min_fd, bool cloexec);
  SysResult dup_to(int64_t fd, int64_t new_fd, bool cloexec);
  bool cloexec(int64_t fd) const { return fds_[fd].cloexec; }
  void set_cloexec(int64_t fd, bool on) { fds_[fd].cloexec = on; }

  static Lookup lookup(const char* path, uint32_t len);

 private:
  // Zero-initialised on purpose: the runtime's state lives in .bss, which
  // costs the VMM nothing to load.
  struct Fd {
    uint16_t slot = 0;  // 1 + index into open_; 0: free
    bool cloexec = false;
  };
  Fd fds_[kMaxFds];
  OpenFile open_[kMaxOpen];
};

}  // namespace ember::guest
