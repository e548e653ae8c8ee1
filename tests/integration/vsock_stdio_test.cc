// The program's stdin/stdout/stderr and exit status over virtio-vsock
// (api/stdio_protocol.h) through ember-vmm's Unix socket, with the host side
// in api/stdio_client.h: echo byte-exact from 0 bytes to 16 MiB, in a booted
// VM and in one restored from a snapshot; a fault the guest cannot report is
// reported by the VMM as an exit frame; reset in place serves one
// connection per run. Real VMs with the real guest kernel.
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>
#include <random>

#include "tests/integration/snapshot_fixture.h"
#include "api/stdio_client.h"

namespace ember::testing {
namespace {

Clock::time_point soon(int ms) { return Clock::now() + std::chrono::milliseconds(ms); }

std::string random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

const std::vector<size_t> kSizes = {0, 1, 4095, 65536, 65537, 1 << 20, 16 << 20};

TEST_F(SnapshotTest, VsockEchoInABootedVm) {
  TempDir tmp;
  const std::string uds = tmp / "v.sock";
  for (size_t n : kSizes) {
    // The console's stdin never ends: the program must take stdin from the
    // vsock connection.
    Background vm({bin("ember-vmm"), "run", "--timeout-ms", "60000", "--vsock-uds", uds, guest_program("echo-musl")},
                  tmp / "out", tmp / "err", /*stdin_never_ends=*/true);
    ASSERT_TRUE(vm.started());
    const std::string input = random_bytes(n, static_cast<uint32_t>(n));
    auto r = stdio::invoke(uds, input, 60000);
    ASSERT_TRUE(r.ok()) << n << " bytes: " << r.message() << " " << read_file(tmp / "err");
    EXPECT_EQ(r->exit_kind, abi::kExitCode);
    EXPECT_EQ(r->exit_value, 0u);
    EXPECT_EQ(r->out.size(), n);
    EXPECT_TRUE(r->out == input) << n << " bytes: output differs";
    EXPECT_EQ(vm.wait(), 0) << read_file(tmp / "err");
    EXPECT_EQ(read_file(tmp / "out"), "");  // nothing leaked to the console
  }
}

TEST_F(SnapshotTest, VsockEchoFromASnapshot) {
  TempDir tmp;
  take_snapshot(guest_program("echo-glibc"), tmp / "snap");
  const std::string uds = tmp / "v.sock";
  for (size_t n : kSizes) {
    Background vm({bin("ember-vmm"), "restore", "--timeout-ms", "60000", "--vsock-uds", uds, tmp / "snap"},
                  tmp / "out", tmp / "err");
    ASSERT_TRUE(vm.started());
    const std::string input = random_bytes(n, static_cast<uint32_t>(n) + 1);
    auto r = stdio::invoke(uds, input, 60000);
    ASSERT_TRUE(r.ok()) << n << " bytes: " << r.message() << " " << read_file(tmp / "err");
    EXPECT_EQ(r->status(), 0);
    EXPECT_EQ(r->out.size(), n);
    EXPECT_TRUE(r->out == input) << n << " bytes: output differs";
    EXPECT_EQ(vm.wait(), 0) << read_file(tmp / "err");
  }
}

TEST_F(SnapshotTest, VsockResetInPlaceServesOneConnectionPerRun) {
  TempDir tmp;
  take_snapshot(guest_program("snapshot_startup-musl"), tmp / "snap");
  const std::string uds = tmp / "v.sock";
  Background vm({bin("ember-vmm"), "restore", "--timeout-ms", "60000", "--repeat", "10", "--vsock-uds", uds,
                 tmp / "snap"},
                tmp / "out", tmp / "err");
  ASSERT_TRUE(vm.started());
  std::string first_random;
  for (int i = 0; i < 10; i++) {
    auto r = stdio::invoke(uds, std::to_string(i) + "\nrandom\n", 30000);
    ASSERT_TRUE(r.ok()) << "run " << i << ": " << r.message() << " " << read_file(tmp / "err");
    EXPECT_EQ(r->status(), 0);
    const std::string want =
        "startups=1 table[" + std::to_string(i) + "]=" + std::to_string(startup_table()[static_cast<size_t>(i)]) + "\n";
    ASSERT_EQ(r->out.substr(0, want.size()), want) << "run " << i;
    const std::string rnd = r->out.substr(want.size());
    EXPECT_NE(rnd, first_random);
    if (i == 0) first_random = rnd;
  }
  EXPECT_EQ(vm.wait(), 0) << read_file(tmp / "err");
}

TEST_F(SnapshotTest, VsockFaultIsReportedByTheVmm) {
  TempDir tmp;
  take_snapshot(guest_program("snapshot_startup-musl"), tmp / "snap");
  const std::string uds = tmp / "v.sock";
  Background vm({bin("ember-vmm"), "restore", "--timeout-ms", "60000", "--vsock-uds", uds, tmp / "snap"},
                tmp / "out", tmp / "err");
  auto r = stdio::invoke(uds, "9\ncrash\n", 30000);
  ASSERT_TRUE(r.ok()) << r.message() << " " << read_file(tmp / "err");
  EXPECT_EQ(r->exit_kind, abi::kExitSignal);
  EXPECT_EQ(r->exit_value, 11u);  // SIGSEGV: the guest died in ring 0's fault stub, the VMM said so
  EXPECT_EQ(r->out, "startups=1 table[9]=" + std::to_string(startup_table()[9]) + "\n");
  EXPECT_EQ(vm.wait(), 139);
}

TEST_F(SnapshotTest, VsockClientsThatMisbehave) {
  TempDir tmp;
  take_snapshot(guest_program("snapshot_counter-musl"), tmp / "snap");
  const std::string uds = tmp / "v.sock";
  Background vm({bin("ember-vmm"), "restore", "--timeout-ms", "60000", "--vsock-uds", uds, tmp / "snap"},
                tmp / "out", tmp / "err");
  // A port nobody listens on in the guest: refused (the socket closes).
  auto refused = stdio::connect(uds, soon(10000), {.port = 4444, .wait_for_socket = true});
  EXPECT_FALSE(refused.ok());
  // Garbage instead of CONNECT: closed; the VM serves the next client.
  {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, uds.c_str(), sizeof a.sun_path - 1);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(::write(fd, "HELLO 1024\n", 11), 11);
    char c;
    EXPECT_EQ(::read(fd, &c, 1), 0);  // closed without an answer
    ::close(fd);
  }
  {
    auto c = stdio::connect(uds, soon(10000), {.wait_for_socket = true});
    ASSERT_TRUE(c.ok()) << c.message();
    auto x = stdio::exchange(*c, "x", soon(30000), 1 << 20);
    ASSERT_EQ(x.end, stdio::Exchange::End::kExited) << x.error;
    EXPECT_EQ(x.out, "1\n");
  }
  EXPECT_EQ(vm.wait(), 0) << read_file(tmp / "err");
}

}  // namespace
}  // namespace ember::testing
