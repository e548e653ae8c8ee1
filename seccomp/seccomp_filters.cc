#include "seccomp/seccomp_filters.h"

#include <linux/kvm.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <algorithm>

#include "api/kvm_abi.h"

namespace ember::seccomp {

namespace {

// The KVM ioctl request numbers a vCPU thread still makes once the guest
// runs (the kernel compares the low 32 bits: `unsigned int cmd`).
static_assert(KVM_RUN == 0xae80);
static_assert(KVM_GET_REGS == 0x8090ae81);
static_assert(KVM_GET_SREGS == 0x8138ae83);
static_assert(KVM_GET_VCPU_EVENTS == 0x8040ae9f);

constexpr uint64_t kLow32 = 0xffffffffull;

ArgCheck ioctl_request(unsigned long request) { return ArgCheck{1, kLow32, request}; }
ArgCheck no_exec_prot() { return ArgCheck{2, PROT_EXEC, 0}; }  // mmap, mprotect: arg 2 is prot
// mmap flags: private anonymous memory only (no file, no shared mapping).
ArgCheck anonymous_private() {
  return ArgCheck{3, MAP_TYPE | MAP_ANONYMOUS, MAP_PRIVATE | MAP_ANONYMOUS};
}

// Memory management that glibc's malloc, free and thread exit need. No
// executable memory, no file mappings: a compromised VMM cannot load code.
void add_memory_rules(std::vector<Rule>& r) {
  r.push_back({"mmap", {no_exec_prot(), anonymous_private()},
               "malloc of large blocks and new arenas; the teardown helper's stack (never PROT_EXEC, never a file)"});
  r.push_back({"mprotect", {no_exec_prot()}, "malloc grows an arena's heap (never PROT_EXEC)"});
  r.push_back({"munmap", {}, "free of large blocks; mappings released at exit"});
  r.push_back({"madvise", {ArgCheck{2, ~uint64_t{0}, MADV_DONTNEED}},
               "free/malloc_trim and thread exit give pages back (MADV_DONTNEED only)"});
  r.push_back({"brk", {}, "malloc grows the main heap"});
}

std::vector<Rule> main_rules() {
  std::vector<Rule> r = {
      {"epoll_wait", {}, "the event loop waits for queue notifications, console fds, signals, timeout, vCPU done"},
      {"epoll_ctl", {}, "the event loop watches console fds only while a queue needs them"},
      {"read", {}, "drains eventfds (ioeventfd notifications, vCPU done), the signalfd and the timerfd"},
      {"readv", {}, "console input: host stdin straight into the guest's receive buffers"},
      {"write", {}, "signals irqfds and eventfds; diagnostics on stderr"},
      {"writev", {}, "console output: the guest's transmit buffers to host stdout/stderr"},
      {"poll", {}, "draining console output to a slow reader at exit; the teardown helper waits on a pidfd"},
      {"futex", {}, "device locks shared with the vCPU thread; joining the vCPU thread"},
      {"tgkill", {ArgCheck{2, ~uint64_t{0}, SIGUSR1}}, "kicks the vCPU thread out of KVM_RUN (SIGUSR1 only)"},
      {"getpid", {}, "pthread_kill (kick) and the teardown helper need the process id"},
      {"rt_sigprocmask", {}, "restoring the signal mask at the end of the run"},
      {"close", {}, "fds released as the VM is torn down"},
      {"clone", {ArgCheck{0, ~uint64_t{0}, CLONE_VM}},
       "starts the teardown helper (vmm/teardown.h): exactly CLONE_VM, no thread and no new namespace"},
      {"close_range", {}, "the teardown helper closes stdio, then the VM's fds"},
      {"pidfd_open", {}, "the teardown helper waits for ember-vmm to exit"},
      {"exit", {}, "the teardown helper exits"},
      {"exit_group", {}, "ember-vmm exits with the program's status"},
      {"restart_syscall", {}, "the kernel restarts an interrupted wait (e.g. after SIGSTOP/SIGCONT)"},
      // Snapshots (run --snapshot-at-ready): the directory and its files are
      // created and opened before the guest runs; at the ready point only
      // these remain to be done.
      {"pwrite64", {}, "snapshot: guest RAM into the pre-opened vm.mem (sparse: non-zero pages at their offsets)"},
      {"fsync", {}, "snapshot: vm.mem and vm.vmstate made durable before the directory is renamed into place"},
      {"renameat2", {}, "snapshot: the prepared directory replaces DIR (RENAME_NOREPLACE, RENAME_EXCHANGE; plain where the file system has neither)"},
      {"unlinkat", {}, "snapshot: the older snapshot it replaced is removed (three files and their directory)"},
      // virtio-vsock's host side (--vsock-uds): the listening socket is made
      // before the guest runs.
      {"accept4", {}, "vsock: host clients connecting to the --vsock-uds socket"},
      {"socket", {ArgCheck{0, ~uint64_t{0}, AF_UNIX}},
       "vsock: a guest connection to host port P connects to the Unix socket <uds>_P (AF_UNIX only: no network)"},
      {"connect", {}, "vsock: a guest connection to host port P connects to the Unix socket <uds>_P"},
      {"sendmsg", {}, "vsock: guest data straight from its buffers to the host socket (MSG_NOSIGNAL)"},
      {"sendto", {}, "vsock: \"OK <port>\" answers and buffered guest data to host sockets (send)"},
      {"recvfrom", {}, "vsock: the host client's \"CONNECT <port>\" line (recv, MSG_PEEK first)"},
      {"shutdown", {}, "vsock: the guest's SHUTDOWN passed on to the host socket"},
      {"timerfd_settime", {}, "re-arms the run timeout for each run of restore --repeat; vsock connect timeouts"},
  };
  add_memory_rules(r);
  return r;
}

std::vector<Rule> vcpu_rules() {
  std::vector<Rule> r = {
      {"ioctl", {ioctl_request(KVM_RUN)}, "runs the guest"},
      {"ioctl", {ioctl_request(KVM_GET_REGS)}, "RIP/RSP for a fault or fatal-exit report"},
      {"ioctl", {ioctl_request(KVM_GET_SREGS)}, "CR2 for a page-fault report"},
      {"ioctl", {ioctl_request(KVM_GET_VCPU_EVENTS)}, "the pending exception for a fatal-exit report"},
      // Snapshot at the ready point: this thread saves its vCPU and the VM's
      // irqchip and clock (the event loop makes no ioctl at all).
      {"ioctl", {ioctl_request(KVM_GET_FPU)}, "snapshot: x87/SSE state"},
      {"ioctl", {ioctl_request(kvm_abi::kGetXsave2)}, "snapshot: the XSAVE area (vector state, AVX-512 included)"},
      {"ioctl", {ioctl_request(kvm_abi::kGetXsave)}, "snapshot: the XSAVE area where KVM has no XSAVE2"},
      {"ioctl", {ioctl_request(KVM_GET_XCRS)}, "snapshot: XCR0"},
      {"ioctl", {ioctl_request(kvm_abi::kGetMsrs)}, "snapshot: MSRs; the guest TSC for the clock pair at a restore or reset"},
      {"ioctl", {ioctl_request(KVM_GET_LAPIC)}, "snapshot: the local APIC"},
      {"ioctl", {ioctl_request(KVM_GET_DEBUGREGS)}, "snapshot: debug registers"},
      {"ioctl", {ioctl_request(KVM_GET_MP_STATE)}, "snapshot: runnable or halted"},
      {"ioctl", {ioctl_request(KVM_GET_IRQCHIP)}, "snapshot: the PICs and the IOAPIC"},
      {"ioctl", {ioctl_request(KVM_GET_CLOCK)}, "snapshot: the VM's kvmclock"},
      // Reset in place (restore --repeat): this thread loads the snapshot's
      // state back into its own vCPU and VM. It can only change the guest,
      // which the guest controls anyway; memory slots stay forbidden.
      {"ioctl", {ioctl_request(KVM_SET_REGS)}, "reset: general registers"},
      {"ioctl", {ioctl_request(KVM_SET_SREGS)}, "reset: segment and control registers"},
      {"ioctl", {ioctl_request(kvm_abi::kSetMsrs)}, "reset: MSRs"},
      {"ioctl", {ioctl_request(KVM_SET_FPU)}, "reset: x87/SSE state (without XSAVE)"},
      {"ioctl", {ioctl_request(kvm_abi::kSetXsave)}, "reset: the XSAVE area"},
      {"ioctl", {ioctl_request(KVM_SET_XCRS)}, "reset: XCR0"},
      {"ioctl", {ioctl_request(KVM_SET_LAPIC)}, "reset: the local APIC"},
      {"ioctl", {ioctl_request(KVM_SET_VCPU_EVENTS)}, "reset: pending events"},
      {"ioctl", {ioctl_request(KVM_SET_DEBUGREGS)}, "reset: debug registers"},
      {"ioctl", {ioctl_request(KVM_SET_MP_STATE)}, "reset: runnable or halted"},
      {"ioctl", {ioctl_request(KVM_SET_IRQCHIP)}, "reset: the PICs and the IOAPIC"},
      {"ioctl", {ioctl_request(KVM_SET_CLOCK)}, "reset: the VM's kvmclock"},
      {"ioctl", {ioctl_request(KVM_GET_TSC_KHZ)}, "reset: the TSC rate for the boot info's clock pair"},
      {"getrandom", {}, "reset: a fresh random seed for the guest (boot info) at every reset"},
      {"write", {}, "MMIO exits signal irqfds and the vCPU-done eventfd; guest log lines on stderr"},
      {"futex", {}, "device locks shared with the event loop"},
      {"rt_sigreturn", {}, "returns from the kick handler (SIGUSR1 interrupts KVM_RUN)"},
      {"rt_sigprocmask", {}, "glibc blocks signals while the thread exits"},
      {"exit", {}, "the vCPU thread ends"},
      {"restart_syscall", {}, "the kernel restarts an interrupted wait (e.g. after SIGSTOP/SIGCONT)"},
  };
  add_memory_rules(r);
  return r;
}

}  // namespace

const char* thread_name(Thread t) { return t == Thread::kMain ? "main" : "vcpu"; }

std::span<const Rule> rules(Thread t) {
  static const std::vector<Rule> main = main_rules();
  static const std::vector<Rule> vcpu = vcpu_rules();
  return t == Thread::kMain ? std::span<const Rule>(main) : std::span<const Rule>(vcpu);
}

std::vector<std::string> allowed_syscalls(Thread t) {
  std::vector<std::string> names;
  for (const Rule& r : rules(t)) names.emplace_back(r.syscall);
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

}  // namespace ember::seccomp
