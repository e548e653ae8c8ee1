// Giving back the stack pages that set-up used and the event loop never
// will. Restoring a snapshot runs ~24 KiB deeper than the loop that follows
// (open_snapshot_files and parse_vmstate hold the vCPU state by value); those
// pages stay dirty, and private to each parked VM, for as long as it lives.
#pragma once

namespace ember {

// Drops (MADV_DONTNEED) 128 KiB of the calling thread's stack below the
// stack pointer's page and the two under it. Nothing there is live: frames
// below the stack pointer are dead, and the pages kept hold the red zone,
// the madvise call and what the event loop itself uses. Nothing else is
// there either: the kernel keeps other mappings at least its stack guard gap
// (1 MiB) below a stack, and the part below the stack's lowest page is
// skipped. A page touched again comes back zeroed. Call from a shallow
// frame, after set-up.
void release_dead_stack();

}  // namespace ember
