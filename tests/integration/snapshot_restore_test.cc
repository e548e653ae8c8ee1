// Snapshots at the ready point, restores in new processes, resets in
// place: a program with an expensive start-up restored 20 times with
// different inputs never repeats its start-up; 100 resets leave no trace of
// the previous run; the clock and the random numbers of a restored guest are
// the host's and fresh; every kind of damaged snapshot is refused with one
// clear line and status 125. Real VMs with the real guest kernel.
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/integration/snapshot_fixture.h"
#include "vmm/vmstate.h"

namespace ember::testing {
namespace {

std::string startup_answer(uint64_t n) {
  const uint64_t i = n % startup_table().size();
  return "startups=1 table[" + std::to_string(i) + "]=" + std::to_string(startup_table()[i]) + "\n";
}

TEST_F(SnapshotTest, StartUpRunsOnceAcrossTwentyRestores) {
  for (const std::string& libc : libc_variants()) {
    TempDir tmp;
    const std::string dir = tmp / "snap";
    take_snapshot(guest_program("snapshot_startup-" + libc), dir);
    const int restores = libc == "musl" ? 20 : 5;
    for (int i = 0; i < restores; i++) {
      const uint64_t a = 1000003ull * static_cast<uint64_t>(i) + 7, b = 77ull * static_cast<uint64_t>(i);
      const ProcessResult r = restore(dir, std::to_string(a) + "\n" + std::to_string(b) + "\n");
      ASSERT_EQ(r.status, 0) << libc << " restore " << i << ": " << r.err;
      EXPECT_EQ(r.out, startup_answer(a) + startup_answer(b)) << libc << " restore " << i;
    }
  }
}

TEST_F(SnapshotTest, SnapshotIsSparseAndSelfContained) {
  TempDir tmp;
  const std::string dir = tmp / "snap";
  take_snapshot(guest_program("snapshot_startup-musl"), dir);
  struct stat st;
  ASSERT_EQ(::stat((dir + "/vm.mem").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 128 << 20);  // the VM's memory size ...
  const uint64_t on_disk = static_cast<uint64_t>(st.st_blocks) * 512;
  EXPECT_GT(on_disk, 16u << 20);  // ... but only what the guest touched: the 16 MiB table and a little more
  EXPECT_LT(on_disk, 24u << 20);
  // The directory alone is enough: the program file may go away.
  TempDir elsewhere;
  std::filesystem::copy(guest_program("snapshot_startup-musl"), elsewhere / "prog");
  take_snapshot(elsewhere / "prog", tmp / "snap2");
  std::filesystem::remove(elsewhere / "prog");
  const ProcessResult r = restore(tmp / "snap2", "5\n");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, startup_answer(5));
  // An older snapshot at DIR is replaced; anything else there is not.
  take_snapshot(guest_program("snapshot_counter-musl"), dir);
  EXPECT_EQ(restore(dir, "x").out, "1\n");
  std::filesystem::create_directory(tmp / "other");
  std::ofstream(tmp / "other/keep.txt") << "mine";
  const ProcessResult refused = run_process({bin("ember-vmm"), "run", "--snapshot-at-ready", tmp / "other",
                                             guest_program("snapshot_counter-musl")});
  EXPECT_EQ(refused.status, 125);
  EXPECT_NE(refused.err.find("not an Ember snapshot directory"), std::string::npos) << refused.err;
  EXPECT_EQ(read_file(tmp / "other/keep.txt"), "mine");
}

TEST_F(SnapshotTest, ResetInPlaceHundredTimes) {
  TempDir tmp;
  const std::string dir = tmp / "snap";
  take_snapshot(guest_program("snapshot_counter-musl"), dir);
  const ProcessResult r = restore(dir, "x", {"--repeat", "100"});
  ASSERT_EQ(r.status, 0) << r.err;
  std::string want;
  for (int i = 0; i < 100; i++) want += "1\n";
  EXPECT_EQ(r.out, want);
  // The start-up program: same input every time, start-up never repeated.
  take_snapshot(guest_program("snapshot_startup-glibc"), tmp / "startup");
  const ProcessResult s = restore(tmp / "startup", "12345\n", {"--repeat", "10"});
  ASSERT_EQ(s.status, 0) << s.err;
  want.clear();
  for (int i = 0; i < 10; i++) want += startup_answer(12345);
  EXPECT_EQ(s.out, want);
}

TEST_F(SnapshotTest, RestoreTakesTheHostsTimeAndFreshRandomness) {
  TempDir tmp;
  const std::string dir = tmp / "snap";
  take_snapshot(guest_program("snapshot_startup-musl"), dir);
  // The snapshot is a few seconds old: a guest clock that went on from the
  // snapshot's time would be that much behind.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  const ProcessResult r = restore(dir, "time\nrandom\n");
  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  ASSERT_EQ(r.status, 0) << r.err;
  long long guest_ns = 0;
  char hex1[64] = {};
  ASSERT_EQ(std::sscanf(r.out.c_str(), "startups=1 time=%lld\nstartups=1 random=%32s", &guest_ns, hex1), 2) << r.out;
  const long long host_ns = static_cast<long long>(now.tv_sec) * 1000000000ll + now.tv_nsec;
  EXPECT_LT(std::llabs(host_ns - guest_ns), 1000000000ll) << "guest " << guest_ns << " host " << host_ns;
  // Another restore of the same snapshot, and resets in place: new bytes each time.
  const ProcessResult r2 = restore(dir, "random\n", {"--repeat", "2"});
  ASSERT_EQ(r2.status, 0) << r2.err;
  char hex2[64] = {}, hex3[64] = {};
  ASSERT_EQ(std::sscanf(r2.out.c_str(), "startups=1 random=%32s\nstartups=1 random=%32s", hex2, hex3), 2) << r2.out;
  EXPECT_EQ(std::strlen(hex1), 32u);
  EXPECT_STRNE(hex1, hex2);
  EXPECT_STRNE(hex2, hex3);
  EXPECT_STRNE(hex1, hex3);
}

TEST_F(SnapshotTest, FaultAfterRestore) {
  TempDir tmp;
  take_snapshot(guest_program("snapshot_startup-musl"), tmp / "snap");
  const ProcessResult r = restore(tmp / "snap", "3\ncrash\n");
  EXPECT_EQ(r.status, 139) << r.err;
  EXPECT_EQ(r.out, startup_answer(3));
}

TEST_F(SnapshotTest, NoSnapshotWhenTheProgramNeverWaits) {
  TempDir tmp;
  const ProcessResult r =
      run_process({bin("ember-vmm"), "run", "--snapshot-at-ready", tmp / "snap", guest_program("hello-musl")});
  EXPECT_EQ(r.status, 125);
  EXPECT_NE(r.err.find("no snapshot"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(tmp / "snap"));
  // Nothing left behind either.
  EXPECT_TRUE(std::filesystem::is_empty(tmp.path()));
}

// --- damaged snapshots: each one line, status 125, never a crash ---------

class DamagedSnapshotTest : public SnapshotTest {
 protected:
  void SetUp() override {
    SnapshotTest::SetUp();
    if (IsSkipped()) return;
    take_snapshot(guest_program("snapshot_counter-musl"), good_ = tmp_ / "good");
  }
  // A copy of the good snapshot to damage.
  std::string copy(const std::string& name) {
    const std::string d = tmp_ / name;
    std::filesystem::create_directory(d);
    for (const char* f : {"vm.vmstate", "vm.mem", "vm.img"}) std::filesystem::copy(good_ + "/" + f, d + "/" + f);
    return d;
  }
  static std::string bytes(const std::string& path) { return read_file(path); }
  static void write(const std::string& path, const std::string& data) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << data;
  }
  void expect_refused(const std::string& dir, const std::string& what) {
    const ProcessResult r = restore(dir, "x");
    EXPECT_EQ(r.status, 125) << what << ": " << r.err;
    EXPECT_NE(r.err.find(what), std::string::npos) << r.err;
    EXPECT_EQ(r.err.rfind("ember-vmm: ", 0), 0u) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line: " << r.err;
  }
  // Rewrites vm.vmstate after `change` (with a valid CRC: only KVM or the
  // restore logic can refuse it).
  void rewrite_state(const std::string& dir, const std::function<void(VmSnapshot&)>& change) {
    const std::string raw = bytes(dir + "/vm.vmstate");
    auto s = parse_vmstate(std::span(reinterpret_cast<const uint8_t*>(raw.data()), raw.size()));
    ASSERT_TRUE(s.ok()) << s.message();
    change(*s);
    const auto out = serialize_vmstate(*s);
    write(dir + "/vm.vmstate", std::string(out.begin(), out.end()));
  }

  TempDir tmp_;
  std::string good_;
};

TEST_F(DamagedSnapshotTest, TheGoodOneWorks) { EXPECT_EQ(restore(good_, "x").out, "1\n"); }

TEST_F(DamagedSnapshotTest, MissingFiles) {
  expect_refused(tmp_ / "nowhere", "vm.vmstate: No such file or directory");
  const std::string d = copy("no-mem");
  std::filesystem::remove(d + "/vm.mem");
  expect_refused(d, "vm.mem: No such file or directory");
  const std::string e = copy("no-img");
  std::filesystem::remove(e + "/vm.img");
  expect_refused(e, "vm.img: No such file or directory");
}

TEST_F(DamagedSnapshotTest, TruncatedState) {
  const std::string d = copy("trunc");
  const std::string s = bytes(d + "/vm.vmstate");
  write(d + "/vm.vmstate", s.substr(0, 20));
  expect_refused(d, "truncated");
  write(d + "/vm.vmstate", s.substr(0, s.size() / 2));
  expect_refused(d, "truncated");
  write(d + "/vm.vmstate", "");
  expect_refused(d, "truncated");
}

TEST_F(DamagedSnapshotTest, WrongMagicOrVersion) {
  const std::string d = copy("magic");
  std::string s = bytes(d + "/vm.vmstate");
  s[0] = 'X';
  write(d + "/vm.vmstate", s);
  expect_refused(d, "bad magic");
  s = bytes(good_ + "/vm.vmstate");
  s[8] = 99;  // format version
  write(d + "/vm.vmstate", s);
  expect_refused(d, "format version 99");
}

TEST_F(DamagedSnapshotTest, BadCrc) {
  const std::string d = copy("crc");
  std::string s = bytes(d + "/vm.vmstate");
  s[s.size() / 2] ^= 0x5a;
  write(d + "/vm.vmstate", s);
  expect_refused(d, "CRC mismatch");
}

TEST_F(DamagedSnapshotTest, MemoryOfTheWrongSize) {
  const std::string d = copy("mem");
  std::filesystem::resize_file(d + "/vm.mem", 64 << 20);
  expect_refused(d, "vm.mem: 67108864 bytes, but the snapshot's memory is 134217728 bytes");
}

TEST_F(DamagedSnapshotTest, ADifferentImage) {
  const std::string d = copy("img");
  std::string img = bytes(d + "/vm.img");
  write(d + "/vm.img", img + "x");
  expect_refused(d, "-byte image");
  img[img.size() - 1] ^= 1;
  write(d + "/vm.img", img);
  expect_refused(d, "not the image this snapshot was taken with");
}

TEST_F(DamagedSnapshotTest, StateThatKvmRefuses) {
  const std::string d = copy("kvm");
  rewrite_state(d, [](VmSnapshot& s) { s.vcpu.mp_state.mp_state = 1000; });
  expect_refused(d, "KVM refused its state: KVM_SET_MP_STATE");
  rewrite_state(d, [](VmSnapshot& s) {
    s.vcpu.mp_state.mp_state = KVM_MP_STATE_RUNNABLE;
    s.vcpu.msrs.push_back({0xdeadbeef, 1});  // no such MSR
  });
  expect_refused(d, "KVM refused its state: KVM_SET_MSRS: MSR 0xdeadbeef was refused");
}

TEST_F(DamagedSnapshotTest, HostileDeviceState) {
  const std::string d = copy("dev");
  rewrite_state(d, [](VmSnapshot& s) { s.devices[0].transport.queues[0].config.desc_gpa = 0x7ffff000000; });
  expect_refused(d, "device 0: virtio device 3 queue 0: descriptor table");
  rewrite_state(d, [](VmSnapshot& s) {
    s.devices[0].transport.queues[0].config.desc_gpa = 0x10000;
    std::swap(s.devices[0], s.devices[2]);
  });
  expect_refused(d, "its devices are not the ones this ember-vmm builds");
  rewrite_state(d, [](VmSnapshot& s) { s.machine.mem_size = 256 << 20; });
  expect_refused(d, "vm.mem: 134217728 bytes, but the snapshot's memory is 268435456 bytes");
}

TEST_F(DamagedSnapshotTest, NotASnapshotAtAll) {
  const std::string d = copy("junk");
  write(d + "/vm.vmstate", std::string(100000, '\xff'));
  expect_refused(d, "bad magic");
  std::filesystem::remove(d + "/vm.vmstate");
  std::filesystem::create_directory(d + "/vm.vmstate");
  expect_refused(d, "vm.vmstate: not a regular file");
}

TEST_F(SnapshotTest, RestoreUsageErrors) {
  EXPECT_EQ(run_process({bin("ember-vmm"), "restore"}).status, 2);
  EXPECT_EQ(run_process({bin("ember-vmm"), "restore", "a", "b"}).status, 2);
  EXPECT_EQ(run_process({bin("ember-vmm"), "restore", "--repeat", "0", "a"}).status, 2);
  const ProcessResult help = run_process({bin("ember-vmm"), "restore", "--help"});
  EXPECT_EQ(help.status, 0);
  EXPECT_NE(help.out.find("--repeat N"), std::string::npos);
}

}  // namespace
}  // namespace ember::testing
