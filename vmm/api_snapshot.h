// Snapshot files as the VMM API names them. Firecracker's /snapshot/create
// takes two paths (state, memory); an Ember snapshot is three files
// (vmm/snapshot.h: vm.vmstate, vm.mem, vm.img). The API writes the state to
// snapshot_path, the memory to mem_file_path and the image next to the
// state file, named after it ("X.vmstate" -> "X.img", any other name N ->
// "N.img"), so that {"snapshot_path": "D/vm.vmstate", "mem_file_path":
// "D/vm.mem"} is exactly the directory `run --snapshot-at-ready D` writes.
// /snapshot/load reads the same three, or a snapshot directory.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "base/result.h"

namespace ember {

struct SnapshotFilePaths {
  std::string state, mem, image;
};

// "D/vm.vmstate" -> "D/vm.img"; "D/x.vmstate" -> "D/x.img"; "D/snap" -> "D/snap.img".
std::string snapshot_image_path(const std::string& state_path);

// /snapshot/load: snapshot_path is a state file or an Ember snapshot
// directory (then its vm.vmstate and vm.img); the memory file as given.
SnapshotFilePaths snapshot_load_paths(const std::string& snapshot_path, const std::string& mem_path);

// Writes the three files, each under a temporary name next to it, fsynced,
// then renamed over the final name (an older file there is replaced; a
// crash leaves the old file or the new one, never half of one). Memory is
// written sparse (zero pages stay holes). The image is hard-linked from
// `image_source` when that file is exactly the image, else copied. Returns
// the bytes of memory written.
Result<uint64_t> write_snapshot_files(const SnapshotFilePaths& paths, std::span<const uint8_t> state,
                                      const uint8_t* ram, uint64_t ram_size, const uint8_t* image,
                                      uint64_t image_size, const std::string& image_source);

}  // namespace ember
