// Snapshot directories on disk (their files: api/snapshot_files.h; vm.img
// is a hard link to the image file where possible).
//
// Writing is two-phase so that the risky part (file system work) happens
// before the guest runs and before ember-vmm's seccomp filter: prepare()
// creates DIR.tmp-<pid>/ next to DIR with the image already in it and the
// other files open; commit() (at the ready point) writes memory and state,
// fsyncs, and renames the directory into place (exchanging it with an older
// snapshot at DIR, which is then removed). A crash leaves either the old
// snapshot or the new one at DIR, never a mix.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "api/snapshot_files.h"
#include "base/fd.h"
#include "base/result.h"
#include "vmm/vmstate.h"

namespace ember {

class SnapshotWriter {
 public:
  SnapshotWriter() = default;
  SnapshotWriter(SnapshotWriter&&) = default;
  SnapshotWriter& operator=(SnapshotWriter&&) = default;
  ~SnapshotWriter();  // removes the temporary directory unless committed

  // `image`/`image_size`: the bytes the guest sees in its image slot;
  // `image_path`: the file they came from, hard-linked when it is the whole
  // image and on the same file system ("" : always copied).
  static Result<SnapshotWriter> prepare(const std::string& dir, uint64_t mem_size, const uint8_t* image,
                                        uint64_t image_size, const std::string& image_path);

  uint32_t image_crc32c() const { return image_crc_; }
  const std::string& dir() const { return dir_; }

  // Writes RAM (sparse) and the state file, fsyncs them, and moves the
  // directory into place. Uses only pwrite64, write, fsync, renameat2 and
  // unlinkat. Returns the bytes of RAM written (non-zero pages).
  Result<uint64_t> commit(std::span<const uint8_t> vmstate, const uint8_t* ram, uint64_t ram_size);

 private:
  void abandon();

  std::string dir_, tmp_name_, final_name_;  // tmp_name_/final_name_: relative to parent_
  Fd parent_, tmp_dir_, mem_, state_;
  bool replace_ = false;  // DIR existed (an older snapshot or empty)
  bool done_ = false;
  uint64_t mem_size_ = 0;
  uint32_t image_crc_ = 0;
};

// Writes the non-zero 4 KiB pages of [data, data+size) to fd at their
// offsets; the file must already be `size` bytes (ftruncate): the zero pages
// stay holes. Returns the bytes written.
Result<uint64_t> write_sparse(int fd, const uint8_t* data, uint64_t size);

// A snapshot directory opened for restore: state parsed and checked against
// the files (sizes, the image's CRC), memory file open, image mapped.
struct SnapshotFiles {
  VmSnapshot state;
  Fd mem;               // vm.mem, mem_size bytes
  Mapping image;        // vm.img, read-only, page-rounded
  uint64_t image_size = 0;
};

Result<SnapshotFiles> open_snapshot(const std::string& dir);
// The same three files under any names (the VMM API's /snapshot/load).
Result<SnapshotFiles> open_snapshot_files(const std::string& state_path, const std::string& mem_path,
                                          const std::string& image_path);

}  // namespace ember
