// Boot set-up as pure functions: the boot-info block, the ring-3 long-mode
// registers, the LAPIC state, and the system tables in guest RAM.
#include <gtest/gtest.h>

#include <cstring>

#include "api/guest_layout.h"
#include "tests/unit/vmm_test_elf.h"
#include "vmm/boot.h"

namespace ember {
namespace {

TEST(VmmBoot, BootInfo) {
  BootParams p;
  p.mem_size = 128 << 20;
  p.image_gpa = abi::kImageGpa;
  p.image_size = 12345;
  p.flags = abi::kBootPreconfigured | abi::kBootHasControl;
  p.tsc_khz = 2600000;
  p.boot_tsc = 777;
  p.realtime_ns = 1700000000000000000ull;
  for (int i = 0; i < 32; i++) p.random_seed[i] = static_cast<uint8_t>(i);
  p.devices = {BootDevice{abi::kVirtioIdConsole, abi::kRoleStdio, 2},
               BootDevice{abi::kVirtioIdConsole, abi::kRoleStderr, 2}};
  p.cmdline = "quiet";
  auto r = make_boot_info(p);
  ASSERT_TRUE(r.ok()) << r.message();
  const abi::BootInfo& b = *r;
  EXPECT_EQ(b.magic, abi::kBootInfoMagic);
  EXPECT_EQ(b.version, abi::kBootInfoVersion);
  EXPECT_EQ(b.size, sizeof(abi::BootInfo));
  EXPECT_EQ(b.flags, p.flags);
  EXPECT_EQ(b.mem_size, p.mem_size);
  EXPECT_EQ(b.image_gpa, abi::kImageGpa);
  EXPECT_EQ(b.image_size, 12345u);
  EXPECT_EQ(b.control_gpa, abi::kControlGpa);
  EXPECT_EQ(b.random_seed[31], 31);
  ASSERT_EQ(b.device_count, 2u);
  EXPECT_EQ(b.devices[0].gpa, abi::kVirtioMmioBase);
  EXPECT_EQ(b.devices[1].gpa, abi::kVirtioMmioBase + abi::kVirtioMmioStride);
  EXPECT_EQ(b.devices[1].role, abi::kRoleStderr);
  EXPECT_EQ(b.devices[0].vector, abi::kDeviceVectorBase);
  EXPECT_EQ(b.devices[1].vector, abi::kDeviceVectorBase + 1u);
  EXPECT_EQ(b.devices[0].queue_count, 2u);
  EXPECT_STREQ(b.cmdline, "quiet");
}

TEST(VmmBoot, BootInfoLimits) {
  BootParams p;
  p.devices.assign(abi::kMaxDevices + 1, BootDevice{3, 1, 2});
  EXPECT_FALSE(make_boot_info(p).ok());
  p.devices.clear();
  p.cmdline.assign(abi::kCmdlineMax, 'x');
  EXPECT_FALSE(make_boot_info(p).ok());
  p.cmdline.pop_back();
  EXPECT_TRUE(make_boot_info(p).ok());
  p.flags = abi::kBootPollOnly;
  p.devices = {BootDevice{3, 1, 2}};
  EXPECT_EQ(make_boot_info(p)->devices[0].vector, 0u);
}

TEST(VmmBoot, LongModeRing3Sregs) {
  kvm_sregs base{};
  base.apic_base = 0xfee00900;
  const kvm_sregs s = make_long_mode_sregs(base);
  EXPECT_EQ(s.apic_base, 0xfee00900u);  // not ours: kept
  EXPECT_EQ(s.cs.selector, abi::kSelUserCode);
  EXPECT_EQ(s.cs.dpl, 3);
  EXPECT_EQ(s.cs.l, 1);
  EXPECT_EQ(s.cs.db, 0);
  EXPECT_EQ(s.ss.selector, abi::kSelUserData);
  EXPECT_EQ(s.ss.dpl, 3);
  EXPECT_EQ(s.ds.selector, abi::kSelUserData);
  EXPECT_EQ(s.tr.selector, abi::kSelTss);
  EXPECT_EQ(s.tr.base, abi::kTssGpa);
  EXPECT_EQ(s.tr.type, 11);
  EXPECT_EQ(s.gdt.base, abi::kGdtGpa);
  EXPECT_EQ(s.gdt.limit, 63);
  EXPECT_EQ(s.idt.base, abi::kIdtGpa);
  EXPECT_EQ(s.idt.limit, 4095);
  EXPECT_EQ(s.cr0, abi::kCr0);
  EXPECT_EQ(s.cr3, abi::kPml4Gpa);
  EXPECT_EQ(s.cr4, abi::kCr4);
  EXPECT_EQ(s.efer, abi::kEfer);
}

TEST(VmmBoot, LapicEnabledWithLvtsMasked) {
  kvm_lapic_state base{};
  const uint32_t lint0 = 0x700;  // ExtINT, unmasked: as after reset
  std::memcpy(base.regs + 0x350, &lint0, 4);
  const kvm_lapic_state s = make_lapic(base);
  auto reg = [&](uint32_t off) {
    uint32_t v;
    std::memcpy(&v, s.regs + off, 4);
    return v;
  };
  EXPECT_EQ(reg(0xf0), 0x1ffu);
  EXPECT_EQ(reg(0x80), 0u);
  EXPECT_EQ(reg(0x350), 0x10700u);
  for (uint32_t lvt : {0x320u, 0x360u, 0x370u}) EXPECT_TRUE(reg(lvt) & (1u << 16)) << std::hex << lvt;
}

TEST(VmmBoot, SystemTablesInRam) {
  testing::TestElf e;
  auto f = e.build();
  auto k = parse_kernel_elf(f, "k");
  ASSERT_TRUE(k.ok()) << k.message();
  auto mem = GuestMemory::create(64 << 20);
  ASSERT_TRUE(mem.ok());
  ASSERT_TRUE(load_kernel(*k, f, *mem).ok());
  ASSERT_TRUE(write_system_tables(*mem, *k, abi::kImageGpa, 0x3000).ok());
  auto q = [&](uint64_t gpa) { return *mem->read_obj<uint64_t>(gpa); };
  EXPECT_EQ(q(abi::kGdtGpa + 0x28), 0x00affb000000ffffull);  // user code, 64-bit, DPL3
  EXPECT_EQ(q(abi::kPml4Gpa) & ~0xfffull, abi::kPdptGpa);
  EXPECT_EQ(q(abi::kPdptGpa + 4 * 8) & ~0xfffull, abi::kPdImageGpa);  // the image slot at 4 GiB
  EXPECT_EQ(q(abi::kPtFirst2MGpa), 0u);                               // page 0 unmapped
  // Accessed preset everywhere, Dirty on writable leaves: a restored VM
  // never writes its page tables for them (each write would copy the page).
  const uint64_t kAccessed = 0x20, kDirty = 0x40;
  EXPECT_EQ(q(abi::kPml4Gpa) & kAccessed, kAccessed);
  EXPECT_EQ(q(abi::kPdLowGpa) & kAccessed, kAccessed);                     // -> the first 2 MiB's table
  EXPECT_EQ(q(abi::kPtFirst2MGpa + 8) & (kAccessed | kDirty), kAccessed | kDirty);  // page 1
  EXPECT_EQ(q(abi::kPdLowGpa + 8) & (kAccessed | kDirty), kAccessed | kDirty);     // 2-4 MiB, RAM
  // Every IDT gate points at a handler from the note; vector 3 is DPL3.
  EXPECT_EQ(q(abi::kIdtGpa + 3 * 16) >> 45 & 3, 3u);
  // Memory too small for the tables: refused, nothing written out of bounds.
  auto tiny = GuestMemory::create(0x10000);
  ASSERT_TRUE(tiny.ok());
  EXPECT_FALSE(write_system_tables(*tiny, *k, 0, 0).ok());
}

}  // namespace
}  // namespace ember
