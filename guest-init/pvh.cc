// PVH boot, C++ half (ring 0, 64-bit, bootstrap identity paging; see
// pvh.S): read what the loader (QEMU & co.) handed over, then build what
// ember-vmm would have built: the system tables (api/boot_tables.h) and the
// boot info. Only used when another VMM boots the guest.
#include "api/boot_info.h"
#include "api/boot_tables.h"
#include "api/guest_layout.h"
#include "guest-init/klib.h"
#include "guest-init/virtio.h"

extern "C" {
extern uint64_t ember_fault_table[32];
extern const uint64_t ember_pvh_fault_table[32];
void ember_runtime_entry();
void ember_syscall_entry();
void ember_wait_gate();
void ember_irq_handler();
[[noreturn]] void ember_pvh_die(uint32_t status);
}

namespace ember::guest {
namespace {

// xen/include/public/arch-x86/hvm/start_info.h
struct HvmStartInfo {
  uint32_t magic;  // 0x336ec578
  uint32_t version;
  uint32_t flags;
  uint32_t nr_modules;
  uint64_t modlist_paddr;
  uint64_t cmdline_paddr;
  uint64_t rsdp_paddr;
  uint64_t memmap_paddr;  // version >= 1
  uint32_t memmap_entries;
  uint32_t reserved;
};
struct HvmModlistEntry {
  uint64_t paddr, size, cmdline_paddr, reserved;
};
struct HvmMemmapEntry {
  uint64_t addr, size;
  uint32_t type, reserved;
};
constexpr uint32_t kHvmStartMagic = 0x336ec578;
constexpr uint32_t kE820Ram = 1;
constexpr uint32_t kStatusPvhBroken = 125;

uint64_t parse_number(const char*& p) {
  uint64_t v = 0;
  if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
    p += 2;
    while (true) {
      char c = *p;
      uint64_t d;
      if (c >= '0' && c <= '9') d = static_cast<uint64_t>(c - '0');
      else if (c >= 'a' && c <= 'f') d = static_cast<uint64_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') d = static_cast<uint64_t>(c - 'A' + 10);
      else break;
      v = v * 16 + d;
      p++;
    }
  } else {
    while (*p >= '0' && *p <= '9') v = v * 10 + static_cast<uint64_t>(*p++ - '0');
  }
  if (*p == 'K' || *p == 'k') v <<= 10, p++;
  else if (*p == 'M' || *p == 'm') v <<= 20, p++;
  return v;
}

// "virtio_mmio.device=<size>@<base>:<irq>[:<id>]", the form QEMU microvm
// (and Firecracker) append to the command line.
uint32_t parse_virtio_devices(const char* cmdline, uint64_t* bases, uint32_t max) {
  static constexpr char kKey[] = "virtio_mmio.device=";
  const uint32_t klen = sizeof kKey - 1;
  uint32_t n = 0;
  for (const char* p = cmdline; *p && n < max; p++) {
    if ((p != cmdline && p[-1] != ' ') || memcmp(p, kKey, klen) != 0) continue;
    const char* q = p + klen;
    uint64_t size = parse_number(q);
    if (*q != '@' || size == 0) continue;
    q++;
    uint64_t base = parse_number(q);
    if (base == 0) continue;
    bases[n++] = base;
  }
  return n;
}

uint8_t cmos(uint8_t reg) {
  uint8_t v;
  asm volatile("outb %1, $0x70; inb $0x71, %0" : "=a"(v) : "a"(reg));
  return v;
}

// Wall-clock time from the CMOS RTC (QEMU microvm has one unless rtc=off),
// in ns since the epoch; 0 if there is none.
uint64_t rtc_realtime_ns() {
  if (cmos(0x0a) == 0xff) return 0;  // no RTC: the port floats
  while (cmos(0x0a) & 0x80) {}       // update in progress
  const uint8_t b = cmos(0x0b);
  auto val = [b](uint8_t raw) -> uint64_t { return (b & 4) ? raw : (raw & 15) + (raw >> 4) * 10; };
  const uint64_t sec = val(cmos(0x00)), min = val(cmos(0x02)), day = val(cmos(0x07)), mon = val(cmos(0x08));
  const uint64_t year = 2000 + val(cmos(0x09));
  uint8_t hr_raw = cmos(0x04);
  uint64_t hour = val(hr_raw & 0x7f);
  if (!(b & 2) && (hr_raw & 0x80)) hour = (hour % 12) + 12;  // 12-hour mode, PM
  if (mon < 1 || mon > 12 || day < 1 || day > 31) return 0;
  // Days since 1970-01-01 (civil-from-days inverse, Howard Hinnant's).
  const uint64_t y = mon <= 2 ? year - 1 : year;
  const uint64_t era = y / 400, yoe = y - era * 400;
  const uint64_t doy = (153 * (mon > 2 ? mon - 3 : mon + 9) + 2) / 5 + day - 1;
  const uint64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  const uint64_t days = era * 146097 + doe - 719468;
  return ((days * 24 + hour) * 3600 + min * 60 + sec) * 1000000000ull;
}

}  // namespace

extern "C" void ember_pvh_main(uint32_t start_info_pa) {
  const auto* si = reinterpret_cast<const HvmStartInfo*>(static_cast<uint64_t>(start_info_pa));
  if (si->magic != kHvmStartMagic) ember_pvh_die(kStatusPvhBroken);

  // Copy out everything first: the tables built below overwrite low memory
  // where the loader may have left these.
  uint64_t mem_top = 0;
  if (si->version >= 1 && si->memmap_paddr) {
    const auto* mm = reinterpret_cast<const HvmMemmapEntry*>(si->memmap_paddr);
    for (uint32_t i = 0; i < si->memmap_entries && i < 128; i++) {
      if (mm[i].type != kE820Ram) continue;
      uint64_t end = mm[i].addr + mm[i].size;
      if (end > mem_top && mm[i].addr < abi::kMaxMemSize) mem_top = end;
    }
  }
  if (mem_top > abi::kMaxMemSize) mem_top = abi::kMaxMemSize;
  mem_top &= ~(abi::kHugePageSize - 1);
  if (mem_top < abi::kMinMemSize) ember_pvh_die(kStatusPvhBroken);
  uint64_t image_gpa = 0, image_size = 0;
  if (si->nr_modules >= 1 && si->modlist_paddr) {
    const auto* mod = reinterpret_cast<const HvmModlistEntry*>(si->modlist_paddr);
    image_gpa = mod->paddr;
    image_size = mod->size;
  }
  char cmdline[abi::kCmdlineMax] = {};
  if (si->cmdline_paddr) {
    const char* c = reinterpret_cast<const char*>(si->cmdline_paddr);
    for (size_t i = 0; i + 1 < sizeof cmdline && c[i]; i++) cmdline[i] = c[i];
  }

  uint64_t mmio[abi::kMaxDevices];
  const uint32_t mmio_count = parse_virtio_devices(cmdline, mmio, abi::kMaxDevices);

  // Faults report through isa-debug-exit here (there is no control page).
  for (int v = 0; v < 32; v++) ember_fault_table[v] = ember_pvh_fault_table[v];

  abi::BootTablesSpec spec{};
  spec.mem_size = mem_top;
  spec.image_gpa = 0;  // the module lies in RAM, already mapped
  spec.image_size = 0;
  spec.mmio_gpas = mmio;
  spec.mmio_count = mmio_count;
  spec.note.abi_version = abi::kGuestAbiVersion;
  spec.note.runtime_entry = reinterpret_cast<uint64_t>(&ember_runtime_entry);
  spec.note.syscall_entry = reinterpret_cast<uint64_t>(&ember_syscall_entry);
  spec.note.wait_gate = reinterpret_cast<uint64_t>(&ember_wait_gate);
  spec.note.irq_handler = reinterpret_cast<uint64_t>(&ember_irq_handler);
  spec.note.fault_handlers = reinterpret_cast<uint64_t>(&ember_fault_table[0]);
  if (!abi::write_boot_tables(0, spec)) ember_pvh_die(kStatusPvhBroken);

  auto* bi = reinterpret_cast<abi::BootInfo*>(abi::kBootInfoGpa);
  memset(bi, 0, sizeof *bi);
  bi->magic = abi::kBootInfoMagic;
  bi->version = abi::kBootInfoVersion;
  bi->size = sizeof *bi;
  bi->flags = abi::kBootPvh | abi::kBootPollOnly;
  bi->mem_size = mem_top;
  bi->image_gpa = image_gpa;
  bi->image_size = image_size;
  bi->tsc_khz = 0;  // the runtime asks CPUID or assumes
  bi->boot_tsc = rdtsc();
  bi->realtime_ns = rtc_realtime_ns();  // 0 without an RTC: time starts at the epoch
  // Seed: RDRAND where the CPU has it, mixed with the TSC.
  const bool has_rdrand = cpuid(1).ecx & (1u << 30);
  for (int i = 0; i < 4; i++) {
    uint64_t v = rdtsc() * 0x9e3779b97f4a7c15ull;
    if (has_rdrand) {
      uint64_t r = 0;
      unsigned char ok = 0;
      asm volatile("rdrand %0; setc %1" : "=r"(r), "=qm"(ok));
      if (ok) v ^= r;
    }
    memcpy(bi->random_seed + 8 * i, &v, 8);
  }
  memcpy(bi->cmdline, cmdline, sizeof cmdline);
  // Devices: every virtio-mmio window that answers; the first console is
  // stdin/stdout, the second stderr.
  uint32_t consoles = 0;
  for (uint32_t i = 0; i < mmio_count; i++) {
    const uint32_t id = virtio_mmio_probe(mmio[i]);
    if (id == 0) continue;
    abi::VirtioDevice& d = bi->devices[bi->device_count++];
    d.gpa = mmio[i];
    d.size = 0x200;
    d.device_id = id;
    d.queue_count = 2;
    d.vector = 0;
    if (id == abi::kVirtioIdConsole) d.role = consoles++ == 0 ? abi::kRoleStdio : abi::kRoleStderr;
    if (id == abi::kVirtioIdVsock) d.role = abi::kRoleControl, d.queue_count = 3;  // CID: config space
  }
}

}  // namespace ember::guest
