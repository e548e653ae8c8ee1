// The snapshot state file, DIR/vm.vmstate: everything about a paused VM that
// is not guest RAM (DIR/vm.mem) or the function image (DIR/vm.img).
//
//   header (32 bytes): magic "EMBRSNAP", u32 format version, u32 header size,
//                      u64 payload size, u32 CRC-32C of the payload, u32 0
//   payload: sections, each {u32 tag, u32 length, `length` bytes}, in any
//            order; the fixed-size KVM structs are stored as the kernel's
//            C layout (x86-64, little-endian), everything else field by field.
//
// The file is untrusted input (it may be truncated, corrupt or hostile):
// parse_vmstate() checks every length, count and enumerated value and never
// reads outside the input; what only KVM can judge (register values) is left
// to the ioctls at restore, whose refusal is an error, not a crash.
#pragma once

#include <linux/kvm.h>

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "base/result.h"
#include "vmm/console.h"
#include "vmm/virtio_mmio.h"
#include "vmm/vsock.h"

namespace ember {

inline constexpr char kVmstateMagic[8] = {'E', 'M', 'B', 'R', 'S', 'N', 'A', 'P'};
inline constexpr uint32_t kVmstateVersion = 1;
inline constexpr size_t kVmstateHeaderSize = 32;
inline constexpr size_t kVmstateMaxSize = 4u << 20;  // far above any real one (~16 KiB)

inline constexpr uint32_t kMaxSnapshotCpuid = 256;
inline constexpr uint32_t kMaxSnapshotMsrs = 1024;
inline constexpr size_t kMaxSnapshotXsave = 64 * 1024;
inline constexpr uint32_t kMaxSnapshotDevices = 8;
inline constexpr uint32_t kMsrTscDeadline = 0x6e0;
inline constexpr uint32_t kMsrTsc = 0x10;

// What the VMM built: checked against the files and the device set at restore.
struct MachineSnapshot {
  uint64_t mem_size = 0;
  uint64_t image_size = 0;     // bytes of vm.img
  uint32_t image_crc32c = 0;   // of vm.img
  uint64_t guest_cid = 0;
  uint64_t boot_flags = 0;     // BootInfo.flags
  uint64_t tsc_khz = 0;        // of the VM that was saved
};

struct VcpuSnapshot {
  std::vector<kvm_cpuid_entry2> cpuid;  // as set with KVM_SET_CPUID2
  kvm_regs regs{};
  kvm_sregs sregs{};
  kvm_fpu fpu{};
  std::vector<uint8_t> xsave;  // KVM_GET_XSAVE2 area; empty when KVM has no XSAVE
  bool has_xcrs = false;
  kvm_xcrs xcrs{};
  // In KVM_SET_MSRS order. IA32_TSC_DEADLINE is among them; restore sets it
  // after the LAPIC (KVM ignores it while the LVT timer is not in
  // TSC-deadline mode).
  std::vector<std::pair<uint32_t, uint64_t>> msrs;
  kvm_lapic_state lapic{};
  kvm_vcpu_events events{};
  kvm_debugregs debugregs{};
  kvm_mp_state mp_state{};
};

struct DeviceSnapshot {
  uint32_t device_id = 0;  // abi::kVirtioId*
  uint32_t role = 0;       // abi::kRole*
  VirtioMmioState transport;
  ConsoleState console;  // device_id == console
  VsockState vsock;      // device_id == vsock
};

struct VmSnapshot {
  MachineSnapshot machine;
  VcpuSnapshot vcpu;
  std::array<kvm_irqchip, 3> irqchip{};  // PIC master, PIC slave, IOAPIC
  kvm_clock_data clock{};
  std::vector<DeviceSnapshot> devices;  // device i at kVirtioMmioBase + i * stride
  bool control_ready = false;
};

// The whole file (header + payload).
std::vector<uint8_t> serialize_vmstate(const VmSnapshot& snapshot);

// Parses and checks a whole file. Errors name what is wrong ("vm.vmstate:
// bad magic", "... CRC mismatch", "... truncated section 7").
Result<VmSnapshot> parse_vmstate(std::span<const uint8_t> file);

}  // namespace ember
