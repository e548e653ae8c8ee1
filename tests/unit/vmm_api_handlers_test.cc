// The VMM API's routes and state machine (vmm/api_handlers.h,
// vmm/vmm_config.h) with a fake backend: status codes, fault messages,
// Firecracker field names, strict JSON, pre-boot-only resources, snapshot
// rules, metrics lines and --config-file. No KVM, no sockets.
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "vmm/api_handlers.h"
#include "vmm/vmm_config.h"

namespace ember {
namespace {

using json = nlohmann::json;

struct FakeBackend : MachineBackend {
  std::vector<std::string> calls;
  bool fail = false;
  VmmConfig started;
  Result<void> result(const char* what) {
    calls.push_back(what);
    if (fail) return Error{std::string(what) + " exploded"};
    return Ok();
  }
  Result<void> start(const VmmConfig& c) override {
    started = c;
    return result("start");
  }
  Result<void> pause() override { return result("pause"); }
  Result<void> resume() override { return result("resume"); }
  Result<void> create_snapshot(const SnapshotCreateSpec& s) override {
    calls.push_back("snapshot " + s.snapshot_path + " " + s.mem_file_path +
                    (s.type == SnapshotType::kDiff ? " diff" : " full"));
    return fail ? Result<void>(Error{"disk full"}) : Ok();
  }
  Result<void> load_snapshot(const SnapshotLoadSpec& s, VmmConfig* c) override {
    calls.push_back("load " + s.snapshot_path + " " + s.mem_file_path +
                    (s.vsock_uds_override ? " vsock=" + *s.vsock_uds_override : ""));
    c->machine.mem_size_mib = 64;
    c->vsock = VsockSpec{7, s.vsock_uds_override.value_or("/old.sock")};
    return fail ? Result<void>(Error{"bad snapshot"}) : Ok();
  }
};

struct FakeSink : MetricsSink {
  std::string path;
  std::vector<std::string> lines;
  Result<void> open(const std::string& p) override {
    if (p == "/nonexistent/dir/m") return Error{"metrics_path " + p + ": No such file or directory"};
    path = p;
    return Ok();
  }
  Result<void> write_line(const std::string& line) override {
    lines.push_back(line);
    return Ok();
  }
};

class ApiHandlersTest : public ::testing::Test {
 protected:
  ApiHandlersTest() : controller_(&backend_), api_(&controller_, &sink_, "vm-1") {}

  HttpResponse req(const char* method, const char* path, const std::string& body = {}) {
    return api_.handle(method, path, body);
  }
  // The fault message of an error response (and checks it is one).
  std::string fault(const HttpResponse& r) {
    json j = json::parse(r.body, nullptr, false);
    EXPECT_TRUE(j.is_object() && j.contains("fault_message")) << r.body;
    return j.is_object() ? j.value("fault_message", std::string()) : std::string();
  }
  json body(const HttpResponse& r) { return json::parse(r.body, nullptr, false); }

  void boot_source() {
    const std::string k = "/proc/self/exe";  // any readable regular file
    ASSERT_EQ(req("PUT", "/boot-source", R"({"kernel_image_path": ")" + k + R"(", "initrd_path": ")" + k +
                                             R"(", "boot_args": "quiet"})")
                  .status,
              204);
  }
  void start() {
    boot_source();
    ASSERT_EQ(req("PUT", "/actions", R"({"action_type": "InstanceStart"})").status, 204);
  }

  FakeBackend backend_;
  FakeSink sink_;
  VmmController controller_;
  ApiHandlers api_;
};

TEST_F(ApiHandlersTest, InstanceInfoAndVersion) {
  auto r = req("GET", "/");
  ASSERT_EQ(r.status, 200);
  json j = body(r);
  EXPECT_EQ(j["id"], "vm-1");
  EXPECT_EQ(j["state"], "Not started");
  EXPECT_EQ(j["app_name"], "ember");
  EXPECT_EQ(j["vmm_version"], kEmberVersion);
  r = req("GET", "/version");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(body(r)["firecracker_version"], kEmberVersion);
}

TEST_F(ApiHandlersTest, UnknownPathIs404AndWrongMethodIs405) {
  auto r = req("GET", "/nope");
  EXPECT_EQ(r.status, 404);
  EXPECT_NE(fault(r).find("GET /nope"), std::string::npos);
  r = req("DELETE", "/machine-config");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.allow, "GET, PUT, PATCH");
  EXPECT_EQ(req("POST", "/actions", "{}").status, 405);
  EXPECT_EQ(req("GET", "/actions").status, 405);
  EXPECT_EQ(req("GET", "/machine-config/").status, 404);
  EXPECT_EQ(req("PUT", "/drives/").status, 404);
  EXPECT_EQ(req("PUT", "/drives/a/b").status, 404);
}

TEST_F(ApiHandlersTest, MachineConfigDefaultsPutPatch) {
  json j = body(req("GET", "/machine-config"));
  EXPECT_EQ(j["vcpu_count"], 1);
  EXPECT_EQ(j["mem_size_mib"], 128);
  EXPECT_EQ(j["smt"], false);
  EXPECT_EQ(j["track_dirty_pages"], false);

  EXPECT_EQ(req("PUT", "/machine-config", R"({"vcpu_count": 1, "mem_size_mib": 256, "smt": false,
                                             "cpu_template": "None", "huge_pages": "None"})")
                .status,
            204);
  EXPECT_EQ(body(req("GET", "/machine-config"))["mem_size_mib"], 256);
  EXPECT_EQ(req("PATCH", "/machine-config", R"({"track_dirty_pages": true})").status, 204);
  j = body(req("GET", "/machine-config"));
  EXPECT_EQ(j["mem_size_mib"], 256);
  EXPECT_EQ(j["track_dirty_pages"], true);
  // PUT resets what it does not name.
  EXPECT_EQ(req("PUT", "/machine-config", R"({"vcpu_count": 1, "mem_size_mib": 64})").status, 204);
  EXPECT_EQ(body(req("GET", "/machine-config"))["track_dirty_pages"], false);
}

TEST_F(ApiHandlersTest, MachineConfigRefusals) {
  auto r = req("PUT", "/machine-config", R"({"vcpu_count": 2, "mem_size_mib": 128})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(fault(r).find("vcpu_count 2 is not supported"), std::string::npos) << fault(r);
  EXPECT_EQ(req("PUT", "/machine-config", R"({"vcpu_count": 0, "mem_size_mib": 128})").status, 400);
  EXPECT_EQ(req("PUT", "/machine-config", R"({"vcpu_count": 1, "mem_size_mib": 15})").status, 400);
  EXPECT_EQ(req("PUT", "/machine-config", R"({"vcpu_count": 1, "mem_size_mib": 129})").status, 400);
  EXPECT_EQ(req("PUT", "/machine-config", R"({"vcpu_count": 1, "mem_size_mib": 4096})").status, 400);
  EXPECT_EQ(req("PUT", "/machine-config", R"({"vcpu_count": 1})").status, 400);  // both required
  r = req("PUT", "/machine-config", R"({"vcpu_count": 1, "mem_size_mib": 128, "smt": true})");
  EXPECT_NE(fault(r).find("smt"), std::string::npos);
  r = req("PUT", "/machine-config", R"({"vcpu_count": 1, "mem_size_mib": 128, "cpu_template": "T2"})");
  EXPECT_NE(fault(r).find("cpu_template"), std::string::npos);
  r = req("PUT", "/machine-config", R"({"vcpu_count": "1", "mem_size_mib": 128})");
  EXPECT_EQ(fault(r), "field `vcpu_count` in machine-config: expected a non-negative integer, got a string");
  r = req("PUT", "/machine-config", R"({"vcpu_count": 1, "mem_size_mib": -128})");
  EXPECT_NE(fault(r).find("got a negative integer"), std::string::npos);
  r = req("PUT", "/machine-config", R"({"vcpu_count": 1.5, "mem_size_mib": 128})");
  EXPECT_NE(fault(r).find("fraction"), std::string::npos);
  r = req("PATCH", "/machine-config", R"({"mem_size_mib": 128, "turbo": true})");
  EXPECT_NE(fault(r).find("unknown field `turbo`"), std::string::npos);
  // Nothing changed.
  EXPECT_EQ(body(req("GET", "/machine-config"))["mem_size_mib"], 128);
  EXPECT_TRUE(backend_.calls.empty());
}

TEST_F(ApiHandlersTest, MalformedBodies) {
  for (const char* bad : {"", "{", "nope", "[1,2]", "\"str\"", "{\"a\":}", "{\"vcpu_count\":1,}", "\xff\xfe",
                          "{\"kernel_image_path\": \"\xc3\x28\"}"}) {
    auto r = req("PUT", "/boot-source", bad);
    EXPECT_EQ(r.status, 400) << bad;
    EXPECT_FALSE(fault(r).empty()) << bad;
  }
  // Too deep.
  std::string deep(100, '[');
  auto r = req("PUT", "/boot-source", deep + std::string(100, ']'));
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(fault(r).find("nested deeper"), std::string::npos) << fault(r);
  std::string deeper(40000, '{');
  EXPECT_EQ(req("PUT", "/vsock", deeper).status, 400);
}

TEST_F(ApiHandlersTest, BootSource) {
  auto r = req("PUT", "/boot-source", R"({"kernel_image_path": "/nonexistent/kernel"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(fault(r).find("No such file"), std::string::npos) << fault(r);
  r = req("PUT", "/boot-source", R"({"kernel_image_path": "/tmp"})");
  EXPECT_NE(fault(r).find("not a regular file"), std::string::npos) << fault(r);
  r = req("PUT", "/boot-source", R"({"initrd_path": "/proc/self/exe"})");
  EXPECT_EQ(fault(r), "missing field `kernel_image_path` in boot-source");
  r = req("PUT", "/boot-source", R"({"kernel_image_path": "/proc/self/exe", "boot_args": 7})");
  EXPECT_EQ(r.status, 400);
  r = req("PUT", "/boot-source", R"({"kernel_image_path": "/proc/self/exe\u0000x"})");
  EXPECT_NE(fault(r).find("NUL"), std::string::npos) << fault(r);
  boot_source();
  json cfg = body(req("GET", "/vm/config"));
  EXPECT_EQ(cfg["boot-source"]["boot_args"], "quiet");
  EXPECT_EQ(cfg["boot-source"]["initrd_path"], "/proc/self/exe");
  EXPECT_TRUE(cfg["drives"].is_array());
  EXPECT_TRUE(cfg["vsock"].is_null());
}

TEST_F(ApiHandlersTest, Vsock) {
  EXPECT_EQ(req("PUT", "/vsock", R"({"guest_cid": 2, "uds_path": "/tmp/v.sock"})").status, 400);
  EXPECT_EQ(req("PUT", "/vsock", R"({"guest_cid": 3})").status, 400);
  EXPECT_EQ(req("PUT", "/vsock", R"({"guest_cid": 4294967295, "uds_path": "/tmp/v.sock"})").status, 400);
  auto r = req("PUT", "/vsock", R"({"guest_cid": 3, "uds_path": ")" + std::string(200, 'a') + R"("})");
  EXPECT_NE(fault(r).find("too long"), std::string::npos);
  EXPECT_EQ(req("PUT", "/vsock", R"({"guest_cid": 3, "uds_path": "/tmp/v.sock", "vsock_id": "vsock0"})").status,
            204);
  json cfg = body(req("GET", "/vm/config"));
  EXPECT_EQ(cfg["vsock"]["guest_cid"], 3);
  EXPECT_EQ(cfg["vsock"]["uds_path"], "/tmp/v.sock");
}

TEST_F(ApiHandlersTest, StartNeedsBootSourceAndHappensOnce) {
  auto r = req("PUT", "/actions", R"({"action_type": "InstanceStart"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(fault(r).find("no boot source"), std::string::npos);
  start();
  EXPECT_EQ(backend_.calls, std::vector<std::string>{"start"});
  EXPECT_EQ(backend_.started.boot_source->boot_args, "quiet");
  EXPECT_EQ(body(req("GET", "/"))["state"], "Running");
  r = req("PUT", "/actions", R"({"action_type": "InstanceStart"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(fault(r).find("already running"), std::string::npos);
}

TEST_F(ApiHandlersTest, PreBootResourcesAreRefusedAfterStart) {
  start();
  for (auto [path, b] : std::vector<std::pair<const char*, const char*>>{
           {"/boot-source", R"({"kernel_image_path": "/proc/self/exe"})"},
           {"/machine-config", R"({"vcpu_count": 1, "mem_size_mib": 64})"},
           {"/vsock", R"({"guest_cid": 3, "uds_path": "/tmp/v"})"}}) {
    auto r = req("PUT", path, b);
    EXPECT_EQ(r.status, 400) << path;
    EXPECT_NE(fault(r).find("before the microVM starts"), std::string::npos) << fault(r);
  }
  EXPECT_EQ(req("PATCH", "/machine-config", R"({"mem_size_mib": 64})").status, 400);
  EXPECT_EQ(req("GET", "/machine-config").status, 200);
}

TEST_F(ApiHandlersTest, StartFailureIsA400AndLeavesTheVmUnstarted) {
  backend_.fail = true;
  boot_source();
  auto r = req("PUT", "/actions", R"({"action_type": "InstanceStart"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(fault(r), "InstanceStart failed: start exploded");
  EXPECT_EQ(body(req("GET", "/"))["state"], "Not started");
}

TEST_F(ApiHandlersTest, Actions) {
  auto r = req("PUT", "/actions", R"({"action_type": "SendCtrlAltDel"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(fault(r).find("keyboard controller"), std::string::npos);
  r = req("PUT", "/actions", R"({"action_type": "Reboot"})");
  EXPECT_NE(fault(r).find("unknown value `Reboot`"), std::string::npos) << fault(r);
  EXPECT_EQ(req("PUT", "/actions", R"({})").status, 400);
  EXPECT_EQ(req("PUT", "/actions", R"({"action_type": "InstanceStart", "payload": 1})").status, 400);
  r = req("PUT", "/actions", R"({"action_type": "FlushMetrics"})");
  EXPECT_NE(fault(r).find("PUT /metrics first"), std::string::npos);
}

TEST_F(ApiHandlersTest, PauseResume) {
  auto r = req("PATCH", "/vm", R"({"state": "Paused"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(fault(r).find("has not been started"), std::string::npos);
  start();
  EXPECT_EQ(req("PATCH", "/vm", R"({"state": "Resumed"})").status, 204);  // already running: fine
  EXPECT_EQ(req("PATCH", "/vm", R"({"state": "Paused"})").status, 204);
  EXPECT_EQ(body(req("GET", "/"))["state"], "Paused");
  EXPECT_EQ(req("PATCH", "/vm", R"({"state": "Paused"})").status, 204);
  EXPECT_EQ(req("PATCH", "/vm", R"({"state": "Resumed"})").status, 204);
  EXPECT_EQ(body(req("GET", "/"))["state"], "Running");
  EXPECT_EQ(req("PATCH", "/vm", R"({"state": "Stopped"})").status, 400);
  EXPECT_EQ(req("PUT", "/vm", R"({"state": "Paused"})").status, 405);
  EXPECT_EQ(backend_.calls, (std::vector<std::string>{"start", "pause", "resume"}));
}

TEST_F(ApiHandlersTest, SnapshotCreateRules) {
  const std::string create = R"({"snapshot_path": "/s/vm.vmstate", "mem_file_path": "/s/vm.mem"})";
  auto r = req("PUT", "/snapshot/create", create);
  EXPECT_NE(fault(r).find("has not been started"), std::string::npos);
  start();
  r = req("PUT", "/snapshot/create", create);
  EXPECT_NE(fault(r).find("paused"), std::string::npos);
  ASSERT_EQ(req("PATCH", "/vm", R"({"state": "Paused"})").status, 204);
  EXPECT_EQ(req("PUT", "/snapshot/create", create).status, 204);
  r = req("PUT", "/snapshot/create",
          R"({"snapshot_path": "/s/a", "mem_file_path": "/s/b", "snapshot_type": "Diff"})");
  EXPECT_NE(fault(r).find("dirty page tracking"), std::string::npos);
  EXPECT_EQ(req("PUT", "/snapshot/create", R"({"snapshot_path": "/s/a"})").status, 400);
  EXPECT_EQ(req("PUT", "/snapshot/create", R"({"snapshot_path": "/s/a", "mem_file_path": "/s/b",
                                              "snapshot_type": "Half"})")
                .status,
            400);
  EXPECT_EQ(backend_.calls.back(), "snapshot /s/vm.vmstate /s/vm.mem full");
  backend_.fail = true;
  r = req("PUT", "/snapshot/create", create);
  EXPECT_EQ(fault(r), "creating the snapshot failed: disk full");
}

TEST_F(ApiHandlersTest, DiffSnapshotWithDirtyTracking) {
  ASSERT_EQ(req("PUT", "/machine-config", R"({"vcpu_count": 1, "mem_size_mib": 128, "track_dirty_pages": true})")
                .status,
            204);
  start();
  ASSERT_EQ(req("PATCH", "/vm", R"({"state": "Paused"})").status, 204);
  EXPECT_EQ(req("PUT", "/snapshot/create",
                R"({"snapshot_path": "/s/a", "mem_file_path": "/s/b", "snapshot_type": "Diff"})")
                .status,
            204);
  EXPECT_EQ(backend_.calls.back(), "snapshot /s/a /s/b diff");
}

TEST_F(ApiHandlersTest, SnapshotLoad) {
  const std::string load =
      R"({"snapshot_path": "/s/vm.vmstate", "mem_backend": {"backend_type": "File", "backend_path": "/s/vm.mem"},
          "resume_vm": true, "vsock_override": {"uds_path": "/tmp/new.sock"}})";
  EXPECT_EQ(req("PUT", "/snapshot/load", load).status, 204);
  EXPECT_EQ(backend_.calls, (std::vector<std::string>{"load /s/vm.vmstate /s/vm.mem vsock=/tmp/new.sock", "resume"}));
  EXPECT_EQ(body(req("GET", "/"))["state"], "Running");
  json cfg = body(req("GET", "/vm/config"));
  EXPECT_EQ(cfg["machine-config"]["mem_size_mib"], 64);
  EXPECT_EQ(cfg["vsock"]["uds_path"], "/tmp/new.sock");
  EXPECT_TRUE(cfg["boot-source"].is_null());
  auto r = req("PUT", "/snapshot/load", load);
  EXPECT_NE(fault(r).find("only possible before the microVM starts"), std::string::npos) << fault(r);
}

TEST_F(ApiHandlersTest, SnapshotLoadWithoutResumeStaysPaused) {
  EXPECT_EQ(req("PUT", "/snapshot/load", R"({"snapshot_path": "/s/x", "mem_file_path": "/s/m"})").status, 204);
  EXPECT_EQ(body(req("GET", "/"))["state"], "Paused");
  EXPECT_EQ(backend_.calls, std::vector<std::string>{"load /s/x /s/m"});
}

TEST_F(ApiHandlersTest, SnapshotLoadRefusals) {
  auto r = req("PUT", "/snapshot/load", R"({"snapshot_path": "/s/x"})");
  EXPECT_NE(fault(r).find("missing mem_backend"), std::string::npos);
  r = req("PUT", "/snapshot/load",
          R"({"snapshot_path": "/s/x", "mem_file_path": "/m", "mem_backend": {"backend_type": "File", "backend_path": "/m"}})");
  EXPECT_NE(fault(r).find("not both"), std::string::npos);
  r = req("PUT", "/snapshot/load", R"({"snapshot_path": "/s/x", "mem_backend": {"backend_type": "Uffd", "backend_path": "/u"}})");
  EXPECT_NE(fault(r).find("Uffd is not supported"), std::string::npos);
  r = req("PUT", "/snapshot/load",
          R"({"snapshot_path": "/s/x", "mem_file_path": "/m", "network_overrides": [{"iface_id": "a", "host_dev_name": "t"}]})");
  EXPECT_NE(fault(r).find("no network interfaces"), std::string::npos);
  // After configuring a boot resource: refused.
  ASSERT_EQ(req("PUT", "/machine-config", R"({"vcpu_count": 1, "mem_size_mib": 64})").status, 204);
  r = req("PUT", "/snapshot/load", R"({"snapshot_path": "/s/x", "mem_file_path": "/m"})");
  EXPECT_NE(fault(r).find("after configuring boot-specific resources"), std::string::npos);
  EXPECT_TRUE(backend_.calls.empty());
}

TEST_F(ApiHandlersTest, DrivesAndNetworkAreClear400s) {
  auto r = req("PUT", "/drives/rootfs", R"({"drive_id": "rootfs", "path_on_host": "/x", "is_root_device": true})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(fault(r).find("Block devices are not supported"), std::string::npos);
  EXPECT_EQ(req("PATCH", "/drives/rootfs", "{}").status, 400);
  r = req("PUT", "/network-interfaces/eth0", R"({"iface_id": "eth0", "host_dev_name": "tap0"})");
  EXPECT_NE(fault(r).find("Network interfaces are not supported"), std::string::npos);
  EXPECT_EQ(req("GET", "/drives/rootfs").status, 405);
}

TEST_F(ApiHandlersTest, MetricsLines) {
  auto r = req("PUT", "/metrics", R"({"metrics_path": "/nonexistent/dir/m"})");
  EXPECT_NE(fault(r).find("No such file"), std::string::npos);
  EXPECT_EQ(req("PUT", "/metrics", R"({"metrics_path": "/tmp/m.json"})").status, 204);
  EXPECT_EQ(sink_.path, "/tmp/m.json");
  r = req("PUT", "/metrics", R"({"metrics_path": "/tmp/other.json"})");
  EXPECT_NE(fault(r).find("Reinitialization"), std::string::npos);
  req("GET", "/machine-config");
  req("PUT", "/machine-config", R"({"vcpu_count": 3, "mem_size_mib": 64})");
  EXPECT_EQ(req("PUT", "/actions", R"({"action_type": "FlushMetrics"})").status, 204);
  ASSERT_EQ(sink_.lines.size(), 1u);
  ASSERT_EQ(sink_.lines[0].back(), '\n');
  json m = json::parse(sink_.lines[0], nullptr, false);
  ASSERT_TRUE(m.is_object()) << sink_.lines[0];
  EXPECT_TRUE(m["utc_timestamp_ms"].is_number_unsigned());
  EXPECT_EQ(m["get_api_requests"]["machine_cfg_count"], 1);
  EXPECT_EQ(m["put_api_requests"]["machine_cfg_fails"], 1);
  EXPECT_EQ(m["put_api_requests"]["metrics_count"], 3);
  EXPECT_EQ(m["vmm"]["state"], "Not started");
  EXPECT_GE(m["api_server"]["requests"].get<int>(), 6);
}

TEST_F(ApiHandlersTest, ExitedVmAnswersClearly) {
  start();
  controller_.on_vm_exit(3, "");
  json info = body(req("GET", "/"));
  EXPECT_EQ(info["state"], "Exited");
  EXPECT_EQ(info["exit_status"], 3);
  auto r = req("PATCH", "/vm", R"({"state": "Paused"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(fault(r).find("has exited (status 3)"), std::string::npos) << fault(r);
  r = req("PUT", "/actions", R"({"action_type": "InstanceStart"})");
  EXPECT_NE(fault(r).find("has exited"), std::string::npos);
  EXPECT_EQ(req("GET", "/vm/config").status, 200);
}

TEST_F(ApiHandlersTest, ConfigFile) {
  auto r = api_.apply_config_file(R"({
    "boot-source": {"kernel_image_path": "/proc/self/exe", "initrd_path": "/proc/self/exe"},
    "machine-config": {"vcpu_count": 1, "mem_size_mib": 64, "smt": false},
    "vsock": {"guest_cid": 3, "uds_path": "/tmp/v.sock"},
    "metrics": {"metrics_path": "/tmp/m"},
    "drives": [], "network-interfaces": []})");
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(controller_.config().machine.mem_size_mib, 64u);
  EXPECT_EQ(controller_.config().vsock->guest_cid, 3u);
  EXPECT_EQ(sink_.path, "/tmp/m");
  EXPECT_TRUE(backend_.calls.empty());  // applying does not start
}

TEST_F(ApiHandlersTest, ConfigFileRefusals) {
  struct Case {
    const char* text;
    const char* message;
  };
  for (const Case& c : std::vector<Case>{
           {R"({})", "missing `boot-source`"},
           {R"({"boot-source": {"kernel_image_path": "/proc/self/exe"}, "balloon": {}})", "unknown field `balloon`"},
           {R"({"boot-source": {"kernel_image_path": "/proc/self/exe"}, "drives": [{"drive_id": "x"}]})",
            "Block devices"},
           {R"({"boot-source": {"kernel_image_path": "/proc/self/exe"}, "machine-config": {"vcpu_count": 2,
               "mem_size_mib": 64}})",
            "machine-config: vcpu_count 2"},
           {R"({"boot-source": 5})", "expected an object"},
           {R"([])", "must be an object"},
       }) {
    FakeBackend b;
    FakeSink s;
    VmmController ctl(&b);
    ApiHandlers a(&ctl, &s, "x");
    auto r = a.apply_config_file(c.text);
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_NE(r.message().find(c.message), std::string::npos) << r.message();
  }
}

}  // namespace
}  // namespace ember
