// A real microVM driven over the VMM API by real HTTP clients (libcurl, and
// the `curl` command): configure, start, pause, resume, read the program's
// output, requests after the VM died, --config-file with and without an API,
// metrics, and hostile requests against a running VM. Skipped without
// /dev/kvm.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/api_client.h"
#include "tests/integration/vm_fixture.h"

namespace ember::testing {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;

class ApiLifecycle : public VmTest {
 protected:
  void SetUp() override {
    VmTest::SetUp();
    if (IsSkipped()) return;
    dir_ = fs::temp_directory_path() /
           ("ember-api-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    sock_ = (dir_ / "api.sock").string();
  }
  void TearDown() override {
    vmm_.reset();
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  // An image running guest program `name` (built for musl).
  std::string image(const std::string& name, const std::vector<std::string>& args = {}) {
    const std::string out = (dir_ / (name + ".img")).string();
    std::vector<std::string> argv = {bin("ember-image"), "pack", "-o", out, "--exec", guest_program(name + "-musl"),
                                     "--arg", name};
    for (const auto& a : args) argv.insert(argv.end(), {"--arg", a});
    auto r = run_process(argv);
    EXPECT_EQ(r.status, 0) << r.err;
    return out;
  }
  json boot_source(const std::string& img) {
    return json{{"kernel_image_path", bin("ember-guest.elf")}, {"initrd_path", img}};
  }
  void spawn(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {bin("ember-vmm"), "--api-sock", sock_, "--id", "life-1"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    vmm_ = std::make_unique<VmmProcess>(argv);
    ASSERT_TRUE(vmm_->wait_socket(sock_)) << vmm_->stderr_text();
  }
  // Polls GET / until the state is `state`.
  json wait_state(ApiClient& api, const std::string& state, std::chrono::milliseconds deadline = 20s) {
    const auto end = std::chrono::steady_clock::now() + deadline;
    json info;
    while (std::chrono::steady_clock::now() < end) {
      info = api.get("/").json();
      if (info.value("state", "") == state) return info;
      std::this_thread::sleep_for(5ms);
    }
    ADD_FAILURE() << "state never became " << state << ": " << info.dump();
    return info;
  }

  fs::path dir_;
  std::string sock_;
  std::unique_ptr<VmmProcess> vmm_;
};

TEST_F(ApiLifecycle, ConfigureStartPauseResumeExit) {
  const std::string img = image("echo");
  spawn();
  ApiClient api(sock_);

  json info = api.get("/").json();
  EXPECT_EQ(info["state"], "Not started");
  EXPECT_EQ(info["id"], "life-1");
  EXPECT_EQ(api.put("/machine-config", json{{"vcpu_count", 1}, {"mem_size_mib", 64}}).status, 204);
  ApiReply r = api.put("/boot-source", boot_source(img));
  ASSERT_EQ(r.status, 204) << r.body;
  json cfg = api.get("/vm/config").json();
  EXPECT_EQ(cfg["machine-config"]["mem_size_mib"], 64);
  EXPECT_EQ(cfg["boot-source"]["initrd_path"], img);

  r = api.put("/actions", json{{"action_type", "InstanceStart"}});
  ASSERT_EQ(r.status, 204) << r.body << vmm_->stderr_text();
  EXPECT_EQ(api.get("/").json()["state"], "Running");

  vmm_->write_stdin("one\n");
  EXPECT_EQ(vmm_->read_stdout_until("one\n"), "one\n");

  ASSERT_EQ(api.patch("/vm", json{{"state", "Paused"}}).status, 204);
  EXPECT_EQ(api.get("/").json()["state"], "Paused");
  vmm_->write_stdin("two\n");
  EXPECT_EQ(vmm_->read_stdout_for(300ms), "one\n") << "a paused guest answered";
  ASSERT_EQ(api.patch("/vm", json{{"state", "Resumed"}}).status, 204);
  EXPECT_EQ(vmm_->read_stdout_until("two\n"), "one\ntwo\n");

  // Pre-boot resources are refused now, reads still work.
  r = api.put("/machine-config", json{{"vcpu_count", 1}, {"mem_size_mib", 128}});
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.fault().find("before the microVM starts"), std::string::npos) << r.body;
  EXPECT_EQ(api.get("/machine-config").json()["mem_size_mib"], 64);

  // Many pause/resume rounds while data flows.
  for (int i = 0; i < 20; i++) {
    ASSERT_EQ(api.patch("/vm", json{{"state", "Paused"}}).status, 204);
    ASSERT_EQ(api.patch("/vm", json{{"state", "Resumed"}}).status, 204);
    vmm_->write_stdin("r" + std::to_string(i) + "\n");
  }
  EXPECT_NE(vmm_->read_stdout_until("r19\n").find("r0\nr1\n"), std::string::npos);

  // The program ends (stdin EOF): the VMM stays, says so, and refuses what needs a VM.
  vmm_->close_stdin();
  info = wait_state(api, "Exited");
  EXPECT_EQ(info["exit_status"], 0);
  r = api.patch("/vm", json{{"state", "Paused"}});
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.fault().find("has exited (status 0)"), std::string::npos) << r.body;
  r = api.put("/actions", json{{"action_type", "InstanceStart"}});
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.fault().find("start a new ember-vmm"), std::string::npos) << r.body;
  r = api.put("/snapshot/create", json{{"snapshot_path", (dir_ / "s").string()}, {"mem_file_path", (dir_ / "m").string()}});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(api.get("/vm/config").status, 200);
  EXPECT_TRUE(vmm_->alive());

  EXPECT_EQ(vmm_->stop(), 0) << "ember-vmm exits with the program's status: " << vmm_->stderr_text();
  EXPECT_FALSE(fs::exists(sock_)) << "the API socket is removed at exit";
}

TEST_F(ApiLifecycle, ProgramStatusAndFaultsAreReported) {
  const std::string img = image("segfault");
  spawn();
  ApiClient api(sock_);
  ASSERT_EQ(api.put("/boot-source", boot_source(img)).status, 204);
  ASSERT_EQ(api.put("/actions", json{{"action_type", "InstanceStart"}}).status, 204);
  json info = wait_state(api, "Exited");
  EXPECT_EQ(info["exit_status"], 139);
  EXPECT_EQ(vmm_->stop(), 139);
}

TEST_F(ApiLifecycle, StartFailuresAreClear400s) {
  spawn();
  ApiClient api(sock_);
  // Not an image: refused at InstanceStart with the reader's reason, and the VMM lives on.
  ASSERT_EQ(api.put("/boot-source", json{{"kernel_image_path", bin("ember-guest.elf")},
                                         {"initrd_path", bin("ember-guest.elf")}})
                .status,
            204);
  ApiReply r = api.put("/actions", json{{"action_type", "InstanceStart"}});
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.fault().find("InstanceStart failed"), std::string::npos) << r.body;
  EXPECT_EQ(api.get("/").json()["state"], "Not started");
  // Not a kernel.
  const std::string img = image("hello");
  ASSERT_EQ(api.put("/boot-source", json{{"kernel_image_path", img}, {"initrd_path", img}}).status, 204);
  r = api.put("/actions", json{{"action_type", "InstanceStart"}});
  EXPECT_EQ(r.status, 400) << r.body;
  // Then a good one boots in the same process.
  ASSERT_EQ(api.put("/boot-source", boot_source(img)).status, 204);
  ASSERT_EQ(api.put("/actions", json{{"action_type", "InstanceStart"}}).status, 204);
  EXPECT_EQ(vmm_->read_stdout_until("hello, world\n"), "hello, world\n");
  EXPECT_EQ(wait_state(api, "Exited")["exit_status"], 0);
}

TEST_F(ApiLifecycle, DrivenWithTheCurlCommand) {
  const std::string img = image("hello");
  spawn();
  auto curl = [&](const std::string& method, const std::string& path, const std::string& body = {}) {
    std::vector<std::string> argv = {"/usr/bin/curl", "-s", "-S", "--unix-socket", sock_, "-X", method,
                                     "-w", "\n%{http_code}"};
    if (!body.empty()) argv.insert(argv.end(), {"-H", "Content-Type: application/json", "-d", body});
    argv.push_back("http://localhost" + path);
    auto r = run_process(argv);
    EXPECT_EQ(r.status, 0) << r.err;
    return r.out;  // body, newline, status
  };
  if (::access("/usr/bin/curl", X_OK) != 0) GTEST_FAIL() << "/usr/bin/curl missing (make deps installs curl)";
  EXPECT_NE(curl("GET", "/").find(R"("state":"Not started")"), std::string::npos);
  EXPECT_EQ(curl("PUT", "/machine-config", R"({"vcpu_count": 1, "mem_size_mib": 32})"), "\n204");
  EXPECT_EQ(curl("PUT", "/boot-source", boot_source(img).dump()), "\n204");
  const std::string bad = curl("PUT", "/machine-config", R"({"vcpu_count": 4, "mem_size_mib": 32})");
  EXPECT_NE(bad.find("fault_message"), std::string::npos);
  EXPECT_EQ(bad.substr(bad.size() - 3), "400");
  EXPECT_EQ(curl("PUT", "/actions", R"({"action_type": "InstanceStart"})"), "\n204");
  EXPECT_EQ(vmm_->read_stdout_until("hello, world\n"), "hello, world\n");
  ApiClient api(sock_);
  wait_state(api, "Exited");
  EXPECT_NE(curl("GET", "/").find(R"("exit_status":0)"), std::string::npos);
  EXPECT_EQ(vmm_->stop(), 0);
}

TEST_F(ApiLifecycle, ConfigFileWithoutApi) {
  const std::string img = image("exit_code", {"7"});
  const std::string cfg = (dir_ / "vm.json").string();
  std::ofstream(cfg) << json{{"boot-source", boot_source(img)},
                             {"machine-config", {{"vcpu_count", 1}, {"mem_size_mib", 32}}}}
                            .dump();
  auto r = run_process({bin("ember-vmm"), "--config-file", cfg, "--no-api"});
  EXPECT_EQ(r.status, 7) << r.err;
  // Output and stdin are the process's own, as with `ember-vmm run`.
  const std::string echo = image("echo");
  std::ofstream(cfg) << json{{"boot-source", boot_source(echo)}}.dump();
  r = run_process({bin("ember-vmm"), "--config-file", cfg}, "through the config file\n");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "through the config file\n");
  // A bad file: one clear line, 125.
  std::ofstream(cfg) << R"({"boot-source": {"kernel_image_path": "/nonexistent"}})";
  r = run_process({bin("ember-vmm"), "--config-file", cfg, "--no-api"});
  EXPECT_EQ(r.status, 125);
  EXPECT_NE(r.err.find("kernel_image_path /nonexistent"), std::string::npos) << r.err;
  std::ofstream(cfg) << R"({"boot-source": )";
  r = run_process({bin("ember-vmm"), "--config-file", cfg, "--no-api"});
  EXPECT_EQ(r.status, 125);
  EXPECT_NE(r.err.find("malformed JSON"), std::string::npos) << r.err;
  r = run_process({bin("ember-vmm"), "--no-api"});
  EXPECT_EQ(r.status, 2);
}

TEST_F(ApiLifecycle, ConfigFileWithApi) {
  const std::string echo = image("echo");
  const std::string cfg = (dir_ / "vm.json").string();
  std::ofstream(cfg) << json{{"boot-source", boot_source(echo)},
                             {"machine-config", {{"vcpu_count", 1}, {"mem_size_mib", 48}}}}
                            .dump();
  spawn({"--config-file", cfg});
  ApiClient api(sock_);
  EXPECT_EQ(api.get("/").json()["state"], "Running");
  EXPECT_EQ(api.get("/machine-config").json()["mem_size_mib"], 48);
  EXPECT_EQ(api.put("/actions", json{{"action_type", "InstanceStart"}}).status, 400);
  vmm_->write_stdin("x\n");
  EXPECT_EQ(vmm_->read_stdout_until("x\n"), "x\n");
  vmm_->close_stdin();
  EXPECT_EQ(wait_state(api, "Exited")["exit_status"], 0);
}

TEST_F(ApiLifecycle, MetricsLines) {
  const std::string img = image("hello");
  const std::string metrics = (dir_ / "metrics.json").string();
  spawn({"--metrics-path", metrics});
  ApiClient api(sock_);
  ASSERT_EQ(api.put("/boot-source", boot_source(img)).status, 204);
  EXPECT_EQ(api.put("/machine-config", json{{"vcpu_count", 2}, {"mem_size_mib", 64}}).status, 400);
  ASSERT_EQ(api.put("/actions", json{{"action_type", "FlushMetrics"}}).status, 204);
  ASSERT_EQ(api.put("/actions", json{{"action_type", "InstanceStart"}}).status, 204);
  wait_state(api, "Exited");
  ASSERT_EQ(api.put("/actions", json{{"action_type", "FlushMetrics"}}).status, 204);
  EXPECT_EQ(api.put("/metrics", json{{"metrics_path", metrics}}).status, 400);  // once only
  EXPECT_EQ(vmm_->stop(), 0);
  std::ifstream in(metrics);
  std::vector<json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(json::parse(line, nullptr, false));
  ASSERT_EQ(lines.size(), 3u) << "two flushes and one at exit";
  for (const json& l : lines) ASSERT_TRUE(l.is_object());
  EXPECT_EQ(lines[0]["vmm"]["state"], "Not started");
  EXPECT_EQ(lines[0]["put_api_requests"]["machine_cfg_fails"], 1);
  EXPECT_EQ(lines[1]["vmm"]["state"], "Exited");
  EXPECT_EQ(lines[1]["vmm"]["exit_status"], 0);
  EXPECT_TRUE(lines[1]["vmm"]["latencies_us"]["instance_start"].is_number_unsigned()) << lines[1].dump();
  EXPECT_FALSE(lines[0]["vmm"].contains("latencies_us"));
  EXPECT_GE(lines[2]["api_server"]["requests"].get<int>(), 6);
}

TEST_F(ApiLifecycle, HostileRequestsAgainstARunningVm) {
  const std::string img = image("echo");
  spawn({"--api-timeout-s", "1", "--api-max-connections", "8"});
  ApiClient api(sock_);
  ASSERT_EQ(api.put("/boot-source", boot_source(img)).status, 204);
  ASSERT_EQ(api.put("/actions", json{{"action_type", "InstanceStart"}}).status, 204);

  for (const std::string& body : {std::string("{"), std::string("null"), std::string("[]"),
                                  std::string(R"({"state": 1})"), std::string(R"({"state": "Paused", "x": 1})"),
                                  std::string(100, '['), std::string("\xff\xff")}) {
    ApiReply r = api.patch("/vm", body);
    EXPECT_EQ(r.status, 400) << body;
    EXPECT_FALSE(r.fault().empty()) << r.body;
  }
  ApiReply big = api.put("/boot-source", std::string(60000, ' '));
  EXPECT_EQ(big.status, 413);
  EXPECT_NE(big.fault().find("51200"), std::string::npos);

  // Slow and idle clients, and more connections than the limit.
  std::vector<int> idle;
  for (int i = 0; i < 20; i++) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, sock_.c_str(), sizeof a.sun_path - 1);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    if (i % 2) ::send(fd, "PATCH /vm HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{", 51, MSG_NOSIGNAL);
    idle.push_back(fd);
  }
  // The guest keeps being served meanwhile (the event loop is not stuck).
  vmm_->write_stdin("still here\n");
  EXPECT_EQ(vmm_->read_stdout_until("still here\n"), "still here\n");
  // And the API answers once the idle connections time out.
  ApiReply r = api.get("/");
  EXPECT_EQ(r.status, 200) << r.error;
  for (int fd : idle) ::close(fd);

  // Many clients at once, each with its own connection.
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int i = 0; i < 16; i++)
    clients.emplace_back([&] {
      ApiClient c(sock_);
      for (int j = 0; j < 20; j++) ok += c.get("/machine-config").status == 200;
    });
  for (auto& t : clients) t.join();
  EXPECT_EQ(ok.load(), 16 * 20);
  EXPECT_EQ(api.get("/").json()["state"], "Running");
  vmm_->close_stdin();
  EXPECT_EQ(wait_state(api, "Exited")["exit_status"], 0);
  EXPECT_EQ(vmm_->stop(), 0);
}

TEST_F(ApiLifecycle, SecondVmmOnTheSameSocketIsRefused) {
  spawn();
  auto r = run_process({bin("ember-vmm"), "--api-sock", sock_});
  EXPECT_EQ(r.status, 125);
  EXPECT_NE(r.err.find("in use by another process"), std::string::npos) << r.err;
  ApiClient api(sock_);
  EXPECT_EQ(api.get("/").status, 200);
}

}  // namespace
}  // namespace ember::testing
