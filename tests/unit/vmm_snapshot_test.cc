// The snapshot formats without KVM: vm.vmstate's serialisation round trip
// and every way a hostile file is refused (vmm/vmstate.h), CRC-32C, the
// sparse memory writer and the snapshot directory's two-phase writer
// (vmm/snapshot.h).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>

#include "api/boot_info.h"
#include "tests/unit/test_temp_dir.h"
#include "vmm/crc32c.h"
#include "vmm/snapshot.h"
#include "vmm/vmstate.h"

namespace ember {
namespace {

VmSnapshot sample() {
  VmSnapshot s;
  s.machine.mem_size = 128ull << 20;
  s.machine.image_size = 12345;
  s.machine.image_crc32c = 0xdeadbeef;
  s.machine.guest_cid = 3;
  s.machine.boot_flags = 5;
  s.machine.tsc_khz = 2500000;
  s.vcpu.cpuid.resize(3);
  s.vcpu.cpuid[1].function = 7;
  s.vcpu.cpuid[2].eax = 0x1234;
  s.vcpu.regs.rip = 0x401000;
  s.vcpu.regs.rsp = 0x7fff0000;
  s.vcpu.sregs.cr3 = 0x8000;
  s.vcpu.fpu.mxcsr = 0x1f80;
  s.vcpu.xsave.assign(4096, 0);
  s.vcpu.xsave[512] = 3;
  s.vcpu.has_xcrs = true;
  s.vcpu.xcrs.nr_xcrs = 1;
  s.vcpu.xcrs.xcrs[0].value = 1;
  s.vcpu.msrs = {{0x10, 123456789}, {0xc0000082, 0x100040}, {kMsrTscDeadline, 0}};
  s.vcpu.lapic.regs[0xf0] = 0xff;
  s.vcpu.events.exception.nr = 14;
  s.vcpu.debugregs.dr7 = 0x400;
  s.vcpu.mp_state.mp_state = KVM_MP_STATE_RUNNABLE;
  for (uint32_t i = 0; i < 3; i++) s.irqchip[i].chip_id = i;
  s.irqchip[2].chip.ioapic.base_address = 0xfec00000;
  s.clock.clock = 987654321;
  for (uint32_t d = 0; d < 3; d++) {
    DeviceSnapshot dev;
    dev.device_id = d < 2 ? abi::kVirtioIdConsole : abi::kVirtioIdVsock;
    dev.role = d == 0 ? abi::kRoleStdio : d == 1 ? abi::kRoleStderr : abi::kRoleControl;
    dev.transport.status = 0xf;
    dev.transport.driver_features = 1ull << 32;
    for (uint32_t q = 0; q < (d < 2 ? 2u : 3u); q++) {
      VirtqueueState qs;
      qs.config = VirtqueueConfig{256, 0x10000 + q * 0x3000, 0x11000 + q * 0x3000, 0x12000 + q * 0x3000};
      qs.next_avail = static_cast<uint16_t>(4 + q);
      qs.next_used = static_cast<uint16_t>(2 + q);
      qs.active = qs.ready = true;
      dev.transport.queues.push_back(qs);
    }
    dev.console.input_eof = d == 1;
    dev.vsock.guest_cid = 3;
    s.devices.push_back(dev);
  }
  s.control_ready = true;
  return s;
}

std::span<const uint8_t> span_of(const std::vector<uint8_t>& v) { return {v.data(), v.size()}; }

// Re-seals a damaged payload with a valid CRC, so that the parser's other
// checks are what refuses it.
void reseal(std::vector<uint8_t>& f) {
  const uint64_t payload = f.size() - kVmstateHeaderSize;
  std::memcpy(f.data() + 16, &payload, 8);
  const uint32_t crc = crc32c(f.data() + kVmstateHeaderSize, payload);
  std::memcpy(f.data() + 24, &crc, 4);
}

// Offset of the first section with this tag (payload order is the writer's).
size_t section(const std::vector<uint8_t>& f, uint32_t tag) {
  size_t at = kVmstateHeaderSize;
  while (at + 8 <= f.size()) {
    uint32_t t, len;
    std::memcpy(&t, f.data() + at, 4);
    std::memcpy(&len, f.data() + at + 4, 4);
    if (t == tag) return at;
    at += 8 + len;
  }
  return 0;
}

TEST(Vmstate, RoundTrip) {
  const VmSnapshot s = sample();
  const auto bytes = serialize_vmstate(s);
  auto p = parse_vmstate(span_of(bytes));
  ASSERT_TRUE(p.ok()) << p.message();
  EXPECT_EQ(p->machine.mem_size, s.machine.mem_size);
  EXPECT_EQ(p->machine.image_crc32c, s.machine.image_crc32c);
  EXPECT_EQ(p->vcpu.cpuid.size(), 3u);
  EXPECT_EQ(p->vcpu.cpuid[2].eax, 0x1234u);
  EXPECT_EQ(p->vcpu.regs.rip, 0x401000u);
  EXPECT_EQ(p->vcpu.sregs.cr3, 0x8000u);
  EXPECT_EQ(p->vcpu.xsave, s.vcpu.xsave);
  EXPECT_TRUE(p->vcpu.has_xcrs);
  EXPECT_EQ(p->vcpu.msrs, s.vcpu.msrs);
  EXPECT_EQ(p->vcpu.lapic.regs[0xf0], static_cast<char>(0xff));
  EXPECT_EQ(p->vcpu.events.exception.nr, 14);
  EXPECT_EQ(p->irqchip[2].chip.ioapic.base_address, 0xfec00000u);
  EXPECT_EQ(p->clock.clock, 987654321u);
  ASSERT_EQ(p->devices.size(), 3u);
  EXPECT_EQ(p->devices[2].transport.queues.size(), 3u);
  EXPECT_EQ(p->devices[2].transport.queues[1].next_avail, 5);
  EXPECT_EQ(p->devices[1].console.input_eof, true);
  EXPECT_EQ(p->devices[2].vsock.guest_cid, 3u);
  EXPECT_TRUE(p->control_ready);
  // Serialising what was parsed gives the same bytes.
  EXPECT_EQ(serialize_vmstate(*p), bytes);
}

TEST(Vmstate, OptionalSectionsMayBeMissing) {
  VmSnapshot s = sample();
  s.vcpu.xsave.clear();
  s.vcpu.has_xcrs = false;
  s.devices.clear();
  auto p = parse_vmstate(span_of(serialize_vmstate(s)));
  ASSERT_TRUE(p.ok()) << p.message();
  EXPECT_TRUE(p->vcpu.xsave.empty());
  EXPECT_FALSE(p->vcpu.has_xcrs);
}

void expect_error(const std::vector<uint8_t>& f, const std::string& what) {
  auto p = parse_vmstate(span_of(f));
  ASSERT_FALSE(p.ok()) << "accepted, expected: " << what;
  EXPECT_NE(p.message().find(what), std::string::npos) << p.message();
  EXPECT_EQ(p.message().rfind("vm.vmstate: ", 0), 0u) << p.message();
}

TEST(Vmstate, EveryTruncationIsRefused) {
  const auto good = serialize_vmstate(sample());
  for (size_t n = 0; n < good.size(); n++) {
    std::vector<uint8_t> f(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_FALSE(parse_vmstate(span_of(f)).ok()) << n;
  }
}

TEST(Vmstate, HeaderErrors) {
  const auto good = serialize_vmstate(sample());
  auto f = good;
  f[0] = 'X';
  expect_error(f, "bad magic");
  f = good;
  f[8] = 2;
  expect_error(f, "format version 2");
  f = good;
  f[12] = 31;
  expect_error(f, "bad header size");
  f = good;
  f.push_back(0);
  expect_error(f, "stray bytes after the payload");
  f = good;
  f[f.size() - 3] ^= 1;
  expect_error(f, "CRC mismatch");
  expect_error({}, "truncated");
}

TEST(Vmstate, SectionErrors) {
  const auto good = serialize_vmstate(sample());
  // A section length that runs past the end.
  auto f = good;
  const size_t regs = section(f, 3);
  const uint32_t huge = 0xfffffff0;
  std::memcpy(f.data() + regs + 4, &huge, 4);
  reseal(f);
  expect_error(f, "runs past the end");
  // A fixed-size section of the wrong size.
  f = good;
  const uint32_t short_len = 100;
  std::memcpy(f.data() + regs + 4, &short_len, 4);
  reseal(f);
  EXPECT_FALSE(parse_vmstate(span_of(f)).ok());
  // Unknown, duplicate, missing sections.
  f = good;
  const uint32_t unknown = 99;
  std::memcpy(f.data() + regs, &unknown, 4);
  reseal(f);
  expect_error(f, "unknown section 99");
  f = good;
  const uint32_t sregs_tag = 4;
  std::memcpy(f.data() + regs, &sregs_tag, 4);  // regs relabelled: sregs twice (and a size mismatch)
  reseal(f);
  EXPECT_FALSE(parse_vmstate(span_of(f)).ok());
  f = good;
  const size_t control = section(f, 16);
  f.resize(control);  // the control section dropped
  reseal(f);
  expect_error(f, "missing section control");
}

TEST(Vmstate, ValueErrors) {
  auto check = [](const std::function<void(VmSnapshot&)>& change, const std::string& what) {
    VmSnapshot s = sample();
    change(s);
    expect_error(serialize_vmstate(s), what);
  };
  check([](VmSnapshot& s) { s.machine.mem_size = 1; }, "memory size 1");
  check([](VmSnapshot& s) { s.machine.mem_size = 4ull << 30; }, "memory size");
  check([](VmSnapshot& s) { s.machine.mem_size = (128ull << 20) + 4096; }, "memory size");
  check([](VmSnapshot& s) { s.machine.image_size = 2ull << 30; }, "image size");
  check([](VmSnapshot& s) { s.machine.guest_cid = 2; }, "guest CID 2");
  check([](VmSnapshot& s) { s.vcpu.cpuid.resize(300); }, "bad entry count");
  check([](VmSnapshot& s) { s.vcpu.msrs.resize(2000); }, "bad entry count");
  check([](VmSnapshot& s) { s.vcpu.xsave.resize(4100); }, "multiple of 64");
  check([](VmSnapshot& s) { s.vcpu.xsave.resize(128 * 1024); }, "multiple of 64");
  check([](VmSnapshot& s) { s.vcpu.xcrs.nr_xcrs = 1000; }, "too many XCRs");
  check([](VmSnapshot& s) { s.irqchip[1].chip_id = 7; }, "chip 1 has id 7");
  check([](VmSnapshot& s) { s.devices[0].device_id = 42; }, "unknown device type 42");
  check([](VmSnapshot& s) { s.devices[0].transport.queues.pop_back(); }, "1 queues");
  check([](VmSnapshot& s) { s.devices[2].transport.queues[0].config.size = 512; }, "size 512");
  check([](VmSnapshot& s) {
    for (int i = 0; i < 6; i++) s.devices.push_back(s.devices[0]);
  }, "more than 8 devices");
}

TEST(Crc32c, KnownValues) {
  EXPECT_EQ(crc32c("123456789", 9), 0xe3069283u);
  EXPECT_EQ(crc32c("", 0), 0u);
  // Incremental use, and lengths around the 8-byte stride.
  const std::string s = "The quick brown fox jumps over the lazy dog, twice over.";
  for (size_t cut = 0; cut <= s.size(); cut++)
    EXPECT_EQ(crc32c(s.data() + cut, s.size() - cut, crc32c(s.data(), cut)), crc32c(s.data(), s.size())) << cut;
}

class SnapshotFilesTest : public ::testing::Test {
 protected:
  ember::testing::TempDir tmp_{"ember-snapfiles"};
  const std::string dir_ = tmp_.path();
};

TEST_F(SnapshotFilesTest, SparseWriteLeavesZeroPagesAsHoles) {
  std::vector<uint8_t> ram(64 * 4096, 0);
  ram[5 * 4096 + 17] = 1;                      // page 5
  std::memset(ram.data() + 10 * 4096, 7, 3 * 4096);  // pages 10-12
  ram.back() = 9;                              // the last page
  const std::string path = dir_ + "/m";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(ram.size())), 0);
  auto w = write_sparse(fd, ram.data(), ram.size());
  ASSERT_TRUE(w.ok()) << w.message();
  EXPECT_EQ(*w, 5u * 4096);
  std::vector<uint8_t> back(ram.size());
  ASSERT_EQ(::pread(fd, back.data(), back.size(), 0), static_cast<ssize_t>(back.size()));
  EXPECT_EQ(back, ram);
  struct stat st;
  ASSERT_EQ(::fstat(fd, &st), 0);
  EXPECT_LE(static_cast<uint64_t>(st.st_blocks) * 512, 16u * 4096);  // not the whole file
  ::close(fd);
}

TEST_F(SnapshotFilesTest, PrepareCommitAndOpen) {
  std::vector<uint8_t> image(10000, 0x42);
  std::vector<uint8_t> ram(16 << 20, 0);
  ram[4096] = 1;
  const std::string dir = dir_ + "/snap";
  {
    auto w = SnapshotWriter::prepare(dir, ram.size(), image.data(), image.size(), "");
    ASSERT_TRUE(w.ok()) << w.message();
    EXPECT_FALSE(std::filesystem::exists(dir));  // not before the commit
    VmSnapshot s = sample();
    s.machine.mem_size = ram.size();
    s.machine.image_size = image.size();
    s.machine.image_crc32c = w->image_crc32c();
    const auto state = serialize_vmstate(s);
    auto c = w->commit(state, ram.data(), ram.size());
    ASSERT_TRUE(c.ok()) << c.message();
  }
  auto f = open_snapshot(dir);
  ASSERT_TRUE(f.ok()) << f.message();
  EXPECT_EQ(f->image_size, image.size());
  EXPECT_EQ(std::memcmp(f->image.bytes(), image.data(), image.size()), 0);
  // Nothing else left in the parent: the temporary directory is gone.
  size_t entries = 0;
  for (auto& e : std::filesystem::directory_iterator(dir_)) entries += e.path().filename() != "snap";
  EXPECT_EQ(entries, 0u);
  // An abandoned prepare leaves nothing behind either.
  { auto w = SnapshotWriter::prepare(dir_ + "/other", ram.size(), image.data(), image.size(), ""); }
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/other"));
  entries = 0;
  for (auto& e : std::filesystem::directory_iterator(dir_)) entries += e.path().filename() != "snap";
  EXPECT_EQ(entries, 0u);
}

}  // namespace
}  // namespace ember
