// Starting the jail's child without copying the jailer's memory.
//
// fork() copies the page tables and makes every writable page copy-on-write:
// on the nested KVM these machines run (PVM) fork + exit + wait costs
// ~0.8 ms and each copy-on-write fault ~12 µs, while vfork + exit + wait
// costs ~30 µs. The child shares the jailer's memory (CLONE_VM) on a stack
// of its own, and the jailer is suspended until the child execs or exits
// (CLONE_VFORK), so the two never run on the same memory at once: the child
// may use the heap and everything the parent set up, as after vfork().
// Dropping to the VMM's uid in the child does not expose the jailer's memory
// to that uid: a credential change marks the (shared) mm non-dumpable, so it
// cannot be ptraced or read through /proc/PID/mem before exec replaces it.
#pragma once

#include <sys/types.h>

#include <cstddef>

namespace ember::jail {

// Runs fn(arg) in a new process (exit signal SIGCHLD) that shares this
// process's memory, on [stack, stack + stack_size), and returns its pid once
// it has exec'd or exited; -1 with errno on failure. fn must end in execve()
// or _exit(); if it returns, the child exits with status 127.
// cgroup_fd >= 0: the child starts in that cgroup v2 directory
// (CLONE_INTO_CGROUP, Linux 5.7): nothing is migrated, so nothing waits for
// the RCU grace period a cgroup move costs.
// sibling: the child is a child of this process's parent (CLONE_PARENT),
// which then waits for it and gets its SIGCHLD; this process cannot.
// Only for a single-threaded caller: another thread could hold a lock (the
// heap's) that the child then waits for forever.
pid_t spawn_sharing_memory(void (*fn)(void*), void* arg, void* stack, size_t stack_size, int cgroup_fd,
                           bool sibling = false);

}  // namespace ember::jail
