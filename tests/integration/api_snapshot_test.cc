// The whole lifecycle over the VMM API with snapshots: configure, start,
// wait for the program's ready point, pause, snapshot, load in a new
// ember-vmm process, resume, and talk to the program, over the console and
// over vsock (the host side of api/stdio_protocol.h, Firecracker's CONNECT
// convention). The program (tests/guest/snapshot_startup.c) builds a 16 MiB
// table at start-up and prints how many start-ups it ran: always 1 after a
// load. Also: the API's snapshot files are the ones `ember-vmm restore DIR`
// reads, and bad snapshots are clear 400s. Skipped without /dev/kvm.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "api/stdio_protocol.h"
#include "tests/integration/api_client.h"
#include "tests/integration/vm_fixture.h"

namespace ember::testing {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;

// The host side of one stdio connection over vsock.
class StdioConnection {
 public:
  // Connects to `uds`, asks for the guest's stdio port; false with a reason.
  bool open(const std::string& uds, std::string* why) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, uds.c_str(), sizeof a.sun_path - 1);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      *why = "connect " + uds + ": " + std::strerror(errno);
      return false;
    }
    const std::string hello = "CONNECT " + std::to_string(abi::kStdioPort) + "\n";
    if (::send(fd_, hello.data(), hello.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(hello.size())) {
      *why = "send CONNECT";
      return false;
    }
    std::string line;
    while (line.empty() || line.back() != '\n') {  // byte by byte: no frame bytes swallowed
      char c;
      if (!wait_readable(10s) || ::recv(fd_, &c, 1, 0) != 1) {
        *why = "no answer to CONNECT (got '" + line + "')";
        return false;
      }
      line += c;
    }
    if (line.rfind("OK ", 0) != 0) {
      *why = "answer to CONNECT: " + line;
      return false;
    }
    return true;
  }
  ~StdioConnection() {
    if (fd_ >= 0) ::close(fd_);
  }

  void send_frame(uint32_t type, const std::string& payload = {}) {
    abi::FrameHeader h{type, static_cast<uint32_t>(payload.size())};
    std::string bytes(reinterpret_cast<const char*>(&h), sizeof h);
    bytes += payload;
    ASSERT_EQ(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
  }

  // Reads frames until the exit frame (or the deadline); stdout collected.
  bool read_until_exit(std::chrono::milliseconds deadline = 20s) {
    const auto end = std::chrono::steady_clock::now() + deadline;
    while (!exited) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
      if (left.count() <= 0 || !wait_readable(left)) return false;
      char buf[65536];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return false;
      in_.append(buf, static_cast<size_t>(n));
      while (in_.size() >= sizeof(abi::FrameHeader)) {
        abi::FrameHeader h;
        std::memcpy(&h, in_.data(), sizeof h);
        if (h.length > abi::kMaxFramePayload) return false;
        if (in_.size() < sizeof h + h.length) break;
        const std::string payload = in_.substr(sizeof h, h.length);
        in_.erase(0, sizeof h + h.length);
        if (h.type == abi::kFrameStdout) out += payload;
        else if (h.type == abi::kFrameStderr) err += payload;
        else if (h.type == abi::kFrameExit && payload.size() == sizeof(abi::ExitPayload)) {
          std::memcpy(&exit_payload, payload.data(), sizeof exit_payload);
          exited = true;
        } else {
          return false;
        }
      }
    }
    return true;
  }

  std::string out, err;
  bool exited = false;
  abi::ExitPayload exit_payload{};

 private:
  bool wait_readable(std::chrono::milliseconds ms) {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(ms.count())) > 0;
  }
  int fd_ = -1;
  std::string in_;
};

class ApiSnapshot : public VmTest {
 protected:
  void SetUp() override {
    VmTest::SetUp();
    if (IsSkipped()) return;
    dir_ = fs::temp_directory_path() /
           ("ember-apisnap-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_ / "snap");
    image_ = (dir_ / "startup.img").string();
    auto r = run_process({bin("ember-image"), "pack", "-o", image_, "--exec", guest_program("snapshot_startup-musl"),
                          "--arg", "snapshot_startup"});
    ASSERT_EQ(r.status, 0) << r.err;
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  std::unique_ptr<VmmProcess> spawn(const std::string& name) {
    const std::string sock = (dir_ / (name + ".sock")).string();
    auto p = std::make_unique<VmmProcess>(std::vector<std::string>{bin("ember-vmm"), "--api-sock", sock, "--id", name});
    EXPECT_TRUE(p->wait_socket(sock)) << p->stderr_text();
    return p;
  }
  std::string sock(const std::string& name) { return (dir_ / (name + ".sock")).string(); }

  static bool wait_for(ApiClient& api, const std::string& key, const json& value, std::chrono::milliseconds d = 20s) {
    const auto end = std::chrono::steady_clock::now() + d;
    while (std::chrono::steady_clock::now() < end) {
      if (api.get("/").json().value(key, json()) == value) return true;
      std::this_thread::sleep_for(5ms);
    }
    return false;
  }

  // Boots snapshot_startup in a new VMM ("template"), waits for its ready
  // point, asks it one question over the console, pauses and snapshots it
  // to snap/vm.vmstate + snap/vm.mem. The answer to "7" goes to *answer7.
  void make_template(const json& vsock, std::string* answer7) {
    auto vmm = spawn("template");
    ApiClient api(sock("template"));
    ASSERT_EQ(api.put("/machine-config", json{{"vcpu_count", 1}, {"mem_size_mib", 64}}).status, 204);
    ASSERT_EQ(api.put("/boot-source", json{{"kernel_image_path", bin("ember-guest.elf")}, {"initrd_path", image_}}).status,
              204);
    if (!vsock.is_null()) {
      ASSERT_EQ(api.put("/vsock", vsock).status, 204);
    }
    EXPECT_EQ(api.get("/").json()["guest_ready"], false);
    ApiReply r = api.put("/actions", json{{"action_type", "InstanceStart"}});
    ASSERT_EQ(r.status, 204) << r.body;
    ASSERT_TRUE(wait_for(api, "guest_ready", true)) << vmm->stderr_text();
    vmm->write_stdin("7\n");
    *answer7 = vmm->read_stdout_until("\n");
    ASSERT_EQ(answer7->rfind("startups=1 table[7]=", 0), 0u) << *answer7;

    r = api.put("/snapshot/create", json{{"snapshot_path", (dir_ / "snap/vm.vmstate").string()},
                                         {"mem_file_path", (dir_ / "snap/vm.mem").string()}});
    EXPECT_EQ(r.status, 400) << "a running VM cannot be snapshotted";
    ASSERT_EQ(api.patch("/vm", json{{"state", "Paused"}}).status, 204);
    r = api.put("/snapshot/create", json{{"snapshot_path", (dir_ / "snap/vm.vmstate").string()},
                                         {"mem_file_path", (dir_ / "snap/vm.mem").string()},
                                         {"snapshot_type", "Full"}});
    ASSERT_EQ(r.status, 204) << r.body << vmm->stderr_text();
    for (const char* f : {"vm.vmstate", "vm.mem", "vm.img"}) EXPECT_TRUE(fs::exists(dir_ / "snap" / f)) << f;
    // Sparse: 64 MiB of guest RAM, a 16 MiB table and little else on disk.
    struct stat st;
    ASSERT_EQ(::stat((dir_ / "snap/vm.mem").c_str(), &st), 0);
    EXPECT_EQ(st.st_size, 64 << 20);
    EXPECT_LT(st.st_blocks * 512, 24 << 20);
    // The template VM resumes and goes on answering.
    ASSERT_EQ(api.patch("/vm", json{{"state", "Resumed"}}).status, 204);
    vmm->write_stdin("8\n");
    EXPECT_NE(vmm->read_stdout_until("table[8]").find("startups=1 table[8]="), std::string::npos);
    vmm->close_stdin();
    EXPECT_TRUE(wait_for(api, "state", "Exited"));
    EXPECT_EQ(vmm->stop(), 0) << vmm->stderr_text();
  }

  fs::path dir_;
  std::string image_;
};

TEST_F(ApiSnapshot, SnapshotLoadResumeOverTheConsole) {
  std::string answer7;
  make_template(nullptr, &answer7);
  if (HasFatalFailure()) return;

  auto vmm = spawn("restored");
  ApiClient api(sock("restored"));
  ApiReply r = api.put("/snapshot/load", json{{"snapshot_path", (dir_ / "snap/vm.vmstate").string()},
                                              {"mem_backend", {{"backend_type", "File"},
                                                               {"backend_path", (dir_ / "snap/vm.mem").string()}}}});
  ASSERT_EQ(r.status, 204) << r.body << vmm->stderr_text();
  json info = api.get("/").json();
  EXPECT_EQ(info["state"], "Paused");
  EXPECT_EQ(info["guest_ready"], true);
  json cfg = api.get("/vm/config").json();
  EXPECT_TRUE(cfg["boot-source"].is_null());
  EXPECT_EQ(cfg["machine-config"]["mem_size_mib"], 64);
  // Pre-boot resources and a second load are refused now.
  EXPECT_EQ(api.put("/machine-config", json{{"vcpu_count", 1}, {"mem_size_mib", 64}}).status, 400);
  EXPECT_EQ(api.put("/snapshot/load", json{{"snapshot_path", "x"}, {"mem_file_path", "y"}}).status, 400);

  vmm->write_stdin("7\n");
  EXPECT_EQ(vmm->read_stdout_for(300ms), "") << "a paused VM answered";
  ASSERT_EQ(api.patch("/vm", json{{"state", "Resumed"}}).status, 204);
  EXPECT_EQ(vmm->read_stdout_until("\n"), answer7) << "the table the template built, and no second start-up";
  vmm->write_stdin("time\n");
  const std::string t = vmm->read_stdout_until("time=");
  vmm->read_stdout_until("\n", 5s);
  EXPECT_NE(t.find("startups=1 time="), std::string::npos);
  // A snapshot of the loaded VM, loaded again (a chain).
  ASSERT_EQ(api.patch("/vm", json{{"state", "Paused"}}).status, 204);
  fs::create_directories(dir_ / "snap2");
  r = api.put("/snapshot/create", json{{"snapshot_path", (dir_ / "snap2/state").string()},
                                       {"mem_file_path", (dir_ / "snap2/memory").string()}});
  ASSERT_EQ(r.status, 204) << r.body;
  EXPECT_TRUE(fs::exists(dir_ / "snap2/state.img"));
  ASSERT_EQ(api.patch("/vm", json{{"state", "Resumed"}}).status, 204);
  vmm->close_stdin();
  EXPECT_TRUE(wait_for(api, "state", "Exited"));
  EXPECT_EQ(api.get("/").json()["exit_status"], 0);
  EXPECT_EQ(vmm->stop(), 0) << vmm->stderr_text();

  auto again = spawn("chained");
  ApiClient api2(sock("chained"));
  r = api2.put("/snapshot/load", json{{"snapshot_path", (dir_ / "snap2/state").string()},
                                      {"mem_file_path", (dir_ / "snap2/memory").string()},
                                      {"resume_vm", true}});
  ASSERT_EQ(r.status, 204) << r.body << again->stderr_text();
  EXPECT_EQ(api2.get("/").json()["state"], "Running");
  again->write_stdin("7\n");
  EXPECT_EQ(again->read_stdout_until("\n"), answer7);
  again->close_stdin();
  EXPECT_TRUE(wait_for(api2, "state", "Exited"));
  EXPECT_EQ(again->stop(), 0);
}

TEST_F(ApiSnapshot, TheApiSnapshotIsTheRestoreCommandsDirectory) {
  std::string answer7;
  make_template(nullptr, &answer7);
  if (HasFatalFailure()) return;
  // `ember-vmm restore DIR` reads what /snapshot/create wrote...
  auto r = run_process({bin("ember-vmm"), "restore", (dir_ / "snap").string()}, "7\n");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, answer7);
  // ...and /snapshot/load takes the directory too (resume_vm: true).
  auto vmm = spawn("fromdir");
  ApiClient api(sock("fromdir"));
  ApiReply lr = api.put("/snapshot/load", json{{"snapshot_path", (dir_ / "snap").string()},
                                               {"mem_backend", {{"backend_type", "File"},
                                                                {"backend_path", (dir_ / "snap/vm.mem").string()}}},
                                               {"resume_vm", true}});
  ASSERT_EQ(lr.status, 204) << lr.body;
  vmm->write_stdin("7\n");
  EXPECT_EQ(vmm->read_stdout_until("\n"), answer7);
}

TEST_F(ApiSnapshot, SnapshotLoadResumeOverVsock) {
  std::string answer7;
  make_template(json{{"guest_cid", 3}, {"uds_path", (dir_ / "template-v.sock").string()}}, &answer7);
  if (HasFatalFailure()) return;

  for (int round = 0; round < 3; round++) {
    const std::string name = "vsock" + std::to_string(round);
    const std::string uds = (dir_ / (name + "-v.sock")).string();
    auto vmm = spawn(name);
    ApiClient api(sock(name));
    ApiReply r = api.put("/snapshot/load",
                         json{{"snapshot_path", (dir_ / "snap/vm.vmstate").string()},
                              {"mem_backend", {{"backend_type", "File"}, {"backend_path", (dir_ / "snap/vm.mem").string()}}},
                              {"vsock_override", {{"uds_path", uds}}},
                              {"resume_vm", true}});
    ASSERT_EQ(r.status, 204) << r.body << vmm->stderr_text();
    EXPECT_EQ(api.get("/vm/config").json()["vsock"]["uds_path"], uds);
    StdioConnection c;
    std::string why;
    ASSERT_TRUE(c.open(uds, &why)) << why << "\n" << vmm->stderr_text();
    c.send_frame(abi::kFrameStdin, "7\n" + std::to_string(100 + round) + "\n");
    c.send_frame(abi::kFrameStdinEof);
    ASSERT_TRUE(c.read_until_exit()) << "out so far: " << c.out << vmm->stderr_text();
    EXPECT_EQ(c.exit_payload.kind, abi::kExitCode);
    EXPECT_EQ(c.exit_payload.value, 0u);
    EXPECT_EQ(c.out.substr(0, answer7.size()), answer7) << c.out;
    EXPECT_NE(c.out.find("startups=1 table[" + std::to_string(100 + round) + "]="), std::string::npos) << c.out;
    EXPECT_TRUE(wait_for(api, "state", "Exited"));
    EXPECT_EQ(api.get("/").json()["exit_status"], 0);
    EXPECT_EQ(vmm->stop(), 0) << vmm->stderr_text();
    EXPECT_EQ(vmm->stdout_text(), "") << "the program's stdio went over vsock";
  }
}

TEST_F(ApiSnapshot, BadSnapshotsAreClear400s) {
  std::string answer7;
  make_template(nullptr, &answer7);
  if (HasFatalFailure()) return;
  auto vmm = spawn("bad");
  ApiClient api(sock("bad"));
  auto load = [&](const std::string& state, const std::string& mem) {
    return api.put("/snapshot/load", json{{"snapshot_path", state}, {"mem_file_path", mem}});
  };
  // Missing files, a state file that is not one, a memory file of the wrong size.
  ApiReply r = load((dir_ / "nope.vmstate").string(), (dir_ / "snap/vm.mem").string());
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.fault().find("No such file"), std::string::npos) << r.body;
  const std::string junk = (dir_ / "junk.vmstate").string();
  std::ofstream(junk) << std::string(4096, 'j');
  fs::copy_file(dir_ / "snap/vm.img", dir_ / "junk.img");
  r = load(junk, (dir_ / "snap/vm.mem").string());
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.fault().find("bad magic"), std::string::npos) << r.body;
  const std::string short_mem = (dir_ / "short.mem").string();
  std::ofstream(short_mem) << "x";
  r = load((dir_ / "snap/vm.vmstate").string(), short_mem);
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.fault().find("bytes, but the snapshot's memory is"), std::string::npos) << r.body;
  EXPECT_EQ(api.get("/").json()["state"], "Not started");
  // After all that, a good load still works in the same process.
  r = load((dir_ / "snap/vm.vmstate").string(), (dir_ / "snap/vm.mem").string());
  ASSERT_EQ(r.status, 204) << r.body;
  ASSERT_EQ(api.patch("/vm", json{{"state", "Resumed"}}).status, 204);
  vmm->write_stdin("7\n");
  EXPECT_EQ(vmm->read_stdout_until("\n"), answer7);
  // Snapshot errors on a live VM: a directory that does not exist, and Diff
  // without dirty tracking.
  ASSERT_EQ(api.patch("/vm", json{{"state", "Paused"}}).status, 204);
  r = api.put("/snapshot/create", json{{"snapshot_path", (dir_ / "no/such/dir/s").string()},
                                       {"mem_file_path", (dir_ / "m").string()}});
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.fault().find("No such file"), std::string::npos) << r.body;
  r = api.put("/snapshot/create", json{{"snapshot_path", (dir_ / "s").string()}, {"mem_file_path", (dir_ / "m").string()},
                                       {"snapshot_type", "Diff"}});
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.fault().find("dirty page tracking"), std::string::npos) << r.body;
  r = api.put("/snapshot/create", json{{"snapshot_path", (dir_ / "same").string()}, {"mem_file_path", (dir_ / "same").string()}});
  EXPECT_EQ(r.status, 400);
  EXPECT_TRUE(vmm->alive());
  ASSERT_EQ(api.patch("/vm", json{{"state", "Resumed"}}).status, 204);
  vmm->write_stdin("7\n");
  EXPECT_EQ(vmm->read_stdout_until("\n" + answer7), answer7 + answer7);
}

}  // namespace
}  // namespace ember::testing
