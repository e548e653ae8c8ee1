// The boot-info block: what the VMM tells the guest before its first
// instruction, and the ELF note by which the guest tells the VMM where its
// entry points are.
//
// Fixed-width, little-endian, no pointers (only guest-physical addresses).
// Freestanding: included by the host and by the guest.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace ember::abi {

inline constexpr uint64_t kBootInfoMagic = 0x544f4f4252424d45ull;  // "EMBRBOOT"
inline constexpr uint32_t kBootInfoVersion = 2;  // bump on every layout change

// BootInfo.flags
inline constexpr uint64_t kBootPreconfigured = 1u << 0;  // devices are DRIVER_OK, queues at queue_gpa(), skip MMIO init
inline constexpr uint64_t kBootPollOnly = 1u << 1;       // no interrupts are routed: poll instead of halting
inline constexpr uint64_t kBootHasControl = 1u << 2;     // the control page (api/control.h) exists at control_gpa
inline constexpr uint64_t kBootPvh = 1u << 3;            // booted through the PVH entry (QEMU & co.), not by ember-vmm

// VirtioDevice.device_id values we use (virtio spec 5.x).
inline constexpr uint32_t kVirtioIdConsole = 3;
inline constexpr uint32_t kVirtioIdVsock = 19;

// VirtioDevice.role: what the guest uses a device for.
// Console convention (Ember's, not the virtio spec's): the device returns a
// receiveq buffer with used length 0 to say "the host's input reached EOF";
// every later read of that stream returns 0 as well.
inline constexpr uint32_t kRoleStdio = 1;   // console: receiveq = stdin, transmitq = stdout
inline constexpr uint32_t kRoleStderr = 2;  // console: transmitq = stderr
inline constexpr uint32_t kRoleControl = 3; // vsock: stdio and exit status for the controller (api/stdio_protocol.h)

struct VirtioDevice {
  uint64_t gpa;        // base of the virtio-mmio register window
  uint32_t size;       // of the register window
  uint32_t device_id;  // kVirtioId*
  uint32_t role;       // kRole*
  uint32_t vector;     // interrupt vector it raises (0: none, poll)
  uint32_t queue_count;
  uint32_t reserved;
};
static_assert(sizeof(VirtioDevice) == 32);

inline constexpr size_t kCmdlineMax = 1024;

struct BootInfo {
  uint64_t magic;          // kBootInfoMagic
  uint32_t version;        // kBootInfoVersion
  uint32_t size;           // sizeof(BootInfo)
  uint64_t flags;          // kBoot*
  uint64_t mem_size;       // RAM is [0, mem_size)
  uint64_t image_gpa;      // the function image (images/image_format.h)
  uint64_t image_size;
  uint64_t tsc_khz;        // 0: unknown (the guest calibrates or assumes)
  uint64_t boot_tsc;       // guest TSC value at which realtime_ns was read
  uint64_t realtime_ns;    // host CLOCK_REALTIME, ns since the epoch
  uint64_t control_gpa;    // api/control.h registers, valid with kBootHasControl
  uint8_t random_seed[32]; // from the host's getrandom(); the guest's CSPRNG key
  uint32_t device_count;   // <= kMaxDevices
  uint32_t reserved;
  // Restore awareness: the VMM increments `generation` and rewrites
  // boot_tsc/realtime_ns and random_seed each time it restores this VM from
  // a snapshot or resets it in place (always while the vCPU is stopped). The
  // guest reads the clock pair at every clock_gettime, and mixes random_seed
  // into its CSPRNG whenever it sees a new generation, so that two restores
  // of one snapshot neither share the snapshot's time nor its random bytes.
  uint64_t generation;     // 0 at first boot
  uint64_t guest_cid;      // vsock CID of this VM (0: no vsock device)
  VirtioDevice devices[8];
  char cmdline[kCmdlineMax];  // NUL-terminated
};
static_assert(sizeof(BootInfo) <= 4096, "boot info is one page");
static_assert(offsetof(BootInfo, devices) % 8 == 0);

// ---------------------------------------------------------------------------
// The guest kernel's ELF note (name "Ember", type kGuestNoteType): the
// addresses the VMM needs to build the IDT and the syscall MSRs, so that the
// guest executes no set-up code in ring 0 at all.
inline constexpr uint32_t kGuestNoteType = 0x454d4231;  // "EMB1"
inline constexpr uint32_t kGuestAbiVersion = 1;
inline constexpr char kGuestNoteName[] = "Ember";

struct GuestNote {
  uint32_t abi_version;     // kGuestAbiVersion
  uint32_t reserved;
  uint64_t runtime_entry;   // ring-3 entry: rdi = boot info GPA; rsp undefined (the runtime sets its own)
  uint64_t syscall_entry;   // LSTAR
  uint64_t wait_gate;       // vector 3 handler (DPL3 gate, IST1)
  uint64_t irq_handler;     // handler for vectors 32..255 (IST2): EOI, iretq
  uint64_t fault_handlers;  // GPA of uint64_t[32]: handler per exception vector (IST3; 2, 8, 18 on IST4)
};
static_assert(sizeof(GuestNote) == 48);

// The PVH note (Xen ELF note type 18, name "Xen"): 32-bit physical entry
// used by QEMU -M microvm, Firecracker and Cloud Hypervisor.
inline constexpr uint32_t kXenElfNotePhys32Entry = 18;

}  // namespace ember::abi
