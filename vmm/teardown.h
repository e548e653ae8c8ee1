// Background teardown: closing a KVM VM fd that had an irqchip, ioeventfds
// or irqfds takes ~15 ms on the machines here (the kernel waits for SRCU
// grace periods), which would triple the cost of a whole `ember-vmm run`.
// Nobody needs to wait for it: once the program's output is written and its
// status known, ember-vmm hands its last references to the VM to a detached
// helper process and exits at once; the helper closes them and exits.
#pragma once

namespace ember {

// Starts the helper: a CLONE_VM child (no copy of the address space) with
// its own copy of the fd table. It closes its stdin/stdout/stderr at once (so
// that readers see EOF when ember-vmm exits), waits until ember-vmm has
// exited (pidfd), then closes every other fd, which is where the VM is
// destroyed, and exits. Returns false if the helper could
// not be started (the caller then tears down in-process, slowly). Call it
// once, right before the process exits, after all output is written.
bool detach_teardown();

}  // namespace ember
