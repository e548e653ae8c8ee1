// What a snapshot directory holds, by name, for everyone who handles one:
// ember-vmm writes and reads them (vmm/snapshot.h), ember-jailer binds them
// into a jail, emberd copies a template's out of its jail.
//
//   DIR/vm.vmstate  everything but memory (vmm/vmstate.h), CRC-checked
//   DIR/vm.mem      guest RAM, raw, sparse: all-zero 4 KiB pages are holes
//   DIR/vm.img      the function image the guest maps program text from
#pragma once

namespace ember {

inline constexpr char kVmstateFile[] = "vm.vmstate";
inline constexpr char kMemFile[] = "vm.mem";
inline constexpr char kImageFile[] = "vm.img";
// How `ember-vmm run --snapshot-at-ready` (exit status 125) starts its error
// when the guest ended before the program first read stdin: the program's
// doing, not the host's; emberd answers a deploy 422 rather than 500 by it.
inline constexpr char kNoSnapshotPrefix[] = "no snapshot: ";

}  // namespace ember
