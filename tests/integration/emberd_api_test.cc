// emberd's API against bad input (bad JSON, huge bodies, unknown functions,
// bad names, wrong methods): clear 4xx and the daemon keeps serving; /metrics
// in Prometheus text format with counters that match what the test did; the
// ember CLI against a real daemon; restarts keep functions and leave no
// orphaned VMMs; delete removes VMs and files.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "controller/testdata/emberd_fixture.h"
#include "tests/loopback_tcp.h"

namespace ember::testing {
namespace {

using nlohmann::json;

// One raw HTTP/1.1 exchange (for requests no client library would send).
std::string raw_http(const std::string& url, const std::string& request) {
  const int fd = connect_loopback(port_of(url));
  if (fd < 0) return "";
  (void)!::write(fd, request.data(), request.size());
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

int status_of(const std::string& response) {
  if (response.size() < 12) return -1;
  return std::atoi(response.c_str() + 9);
}

class EmberdApi : public EmberdTest {};

TEST_P(EmberdApi, MalformedRequestsGetClear4xxAndTheDaemonKeepsServing) {
  start("limits:\n  max_request_bytes: 65536\n  max_image_bytes: 4194304\n");
  ASSERT_EQ(d_.deploy("probe", slurp(fnprobe_path()), json{{"pool", 1}})->status, 201);
  auto& h = d_.http();
  struct Case {
    std::function<httplib::Result()> send;
    int status;
    const char* needle;
  } cases[] = {
      {[&] { return h.Put("/v1/functions/x", httplib::Headers{{"X-Ember-Function", "{bad json"}}, slurp(fnprobe_path()), "application/octet-stream"); }, 400, "not valid JSON"},
      {[&] { return h.Put("/v1/functions/x", httplib::Headers{{"X-Ember-Function", R"({"memory_mib": "lots"})"}}, slurp(fnprobe_path()), "application/octet-stream"); }, 400, "memory_mib"},
      {[&] { return h.Put("/v1/functions/x", httplib::Headers{{"X-Ember-Function", R"({"colour": 1})"}}, slurp(fnprobe_path()), "application/octet-stream"); }, 400, "colour"},
      {[&] { return h.Put("/v1/functions/x?pool=-1", slurp(fnprobe_path()), "application/octet-stream"); }, 400, "pool"},
      {[&] { return h.Put("/v1/functions/x", "#!/bin/sh\necho hi\n", "application/octet-stream"); }, 400, "neither"},
      {[&] { return h.Put("/v1/functions/x", "", "application/octet-stream"); }, 400, "empty body"},
      {[&] { return h.Put("/v1/functions/x", slurp("/bin/true").substr(0, 40), "application/octet-stream"); }, 400, "the program is a truncated ELF file"},
      {[&] { return h.Put("/v1/functions/x", std::string(5 << 20, 'x'), "application/octet-stream"); }, 413, "larger than"},
      {[&] { return h.Post("/v1/functions/probe/invoke", std::string(100000, 'x'), "text/plain"); }, 413, "larger than"},
      {[&] { return h.Post("/v1/functions/nope/invoke", "x", "text/plain"); }, 404, "no function named 'nope'"},
      {[&] { return h.Get("/v1/functions/nope"); }, 404, "no function"},
      {[&] { return h.Delete("/v1/functions/nope"); }, 404, "no function"},
      {[&] { return h.Post("/v1/functions/Bad_Name/invoke", "x", "text/plain"); }, 400, "invalid function name"},
      {[&] { return h.Put("/v1/functions/" + std::string(64, 'a'), "x", "text/plain"); }, 400, "invalid function name"},
      {[&] { return h.Post("/v1/functions/%ff%fe/invoke", "x", "text/plain"); }, 400, "invalid function name"},
      {[&] { return h.Get("/v1/functions/%ff%fe"); }, 400, "invalid function name"},
      {[&] { return h.Delete("/v1/functions/%ff%fe"); }, 400, "invalid function name"},
      {[&] { return h.Put("/v1/functions/%ff%fe", "x", "text/plain"); }, 400, "invalid function name"},
      {[&] { return h.Post("/v1/functions/probe/invoke?colour=1", "x", "text/plain"); }, 400, "unknown query parameter"},
      {[&] { return h.Get("/v2/nothing"); }, 404, "no such endpoint"},
      {[&] { return h.Patch("/v1/functions/probe", "x", "text/plain"); }, 405, "not allowed"},
      {[&] { return h.Post("/v1/vms", "x", "text/plain"); }, 405, "not allowed"},
  };
  for (size_t i = 0; i < std::size(cases); i++) {
    auto r = cases[i].send();
    ASSERT_TRUE(r) << "case " << i;
    EXPECT_EQ(r->status, cases[i].status) << "case " << i << ": " << r->body;
    if (r->status != cases[i].status) continue;
    EXPECT_NE(r->body.find(cases[i].needle), std::string::npos) << "case " << i << ": " << r->body;
    EXPECT_TRUE(json::accept(r->body)) << "case " << i << ": errors are JSON: " << r->body;
  }
  // Names that try to leave the functions directory, sent byte for byte.
  for (const char* path : {"/v1/functions/../x/invoke", "/v1/functions/..%2Fx/invoke", "/v1/functions/..", "/v1/functions/%2e%2e"}) {
    const std::string resp = raw_http(d_.url(), std::string("POST ") + path + " HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx");
    const int st = status_of(resp);
    EXPECT_TRUE(st == 400 || st == 404 || st == 405) << path << ": " << resp;
  }
  // Garbage that is not HTTP at all, and a body that never ends.
  EXPECT_EQ(status_of(raw_http(d_.url(), "\x01\x02 nonsense\r\nConnection: close\r\n\r\n")), 400);
  EXPECT_EQ(status_of(raw_http(d_.url(), "POST /v1/functions/probe/invoke HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\nabc")), 413);
  EXPECT_FALSE(controller::path_exists(dir_ + "/functions/x"));
  EXPECT_FALSE(controller::path_exists(dir_ + "/x"));
  // Still serving.
  auto ok = d_.invoke("probe", "still here");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(ok->body, "still here");
  EXPECT_EQ(h.Get("/healthz")->status, 200);
}

TEST_P(EmberdApi, MetricsMatchWhatHappened) {
  start();
  // The deadline counts from the VM's start, so in boot mode it includes a
  // boot: under emulated KVM that alone has taken over 400 ms.
  ASSERT_EQ(d_.deploy("m", slurp(fnprobe_path()), json{{"pool", 1}, {"timeout_ms", 2000}})->status, 201);
  for (int i = 0; i < 5; i++) EXPECT_EQ(d_.invoke("m", "exit 0")->status, 200);
  for (int i = 0; i < 3; i++) EXPECT_EQ(d_.invoke("m", "exit 2")->status, 200);
  EXPECT_EQ(d_.invoke("m", "spin")->status, 504);
  EXPECT_EQ(d_.invoke("nope", "x")->status, 404);
  auto m = d_.metrics();
  EXPECT_EQ(m["ember_invocations_total{function=\"m\",outcome=\"ok\"}"], 5);
  EXPECT_EQ(m["ember_invocations_total{function=\"m\",outcome=\"error\"}"], 3);
  EXPECT_EQ(m["ember_invocations_total{function=\"m\",outcome=\"timeout\"}"], 1);
  EXPECT_EQ(m["ember_invocation_duration_seconds_count{function=\"m\"}"], 9);
  EXPECT_EQ(m["ember_pool_hits_total{function=\"m\"}"] + m["ember_pool_misses_total{function=\"m\"}"], 9);
  EXPECT_EQ(m["ember_deploys_total"], 1);
  EXPECT_EQ(m["ember_functions"], 1);
  EXPECT_EQ(m["ember_pool_target_vms{function=\"m\"}"], 1);
  EXPECT_EQ(m["ember_http_requests_total{code=\"201\"}"], 1);
  EXPECT_EQ(m["ember_http_requests_total{code=\"504\"}"], 1);
  EXPECT_EQ(m["ember_http_requests_total{code=\"404\"}"], 1);
  // Snapshot mechanism: VMs are reset in place between invocations, so
  // fewer starts than invocations.
  EXPECT_GE(m["ember_vm_starts_total"], 1);
  EXPECT_GT(m["ember_vm_memory_budget_bytes"], 0);
  EXPECT_TRUE(m.count("ember_vms{state=\"ready\"}"));
  EXPECT_TRUE(m.count("ember_vm_memory_bytes"));
  EXPECT_TRUE(m.count("ember_vm_lifecycle_seconds_count{step=\"restore\"}"));
  EXPECT_TRUE(m.count("ember_vm_lifecycle_seconds_bucket{step=\"boot\",le=\"+Inf\"}"));
  // Deleting the function drops its series.
  EXPECT_EQ(d_.http().Delete("/v1/functions/m")->status, 204);
  auto after = d_.metrics();
  EXPECT_FALSE(after.count("ember_invocations_total{function=\"m\",outcome=\"ok\"}"));
  EXPECT_EQ(after["ember_functions"], 0);
}

// As root with ember-jailer beside it, emberd's defaults jail every VM and
// still use template snapshots (the jailer restores too); the other modes
// are what their configuration says.
TEST_P(EmberdApi, RangeHeadersAreIgnoredNotAmplified) {
  start();
  ASSERT_EQ(d_.deploy("echo", slurp(example_image("echo")))->status, 201);
  std::string ranges = "bytes=0-";
  for (int i = 0; i < 200; i++) ranges += ",0-";
  const httplib::Headers h = {{"Range", ranges}};
  const std::string input(64 << 10, 'r');
  auto inv = d_.new_client()->Post("/v1/functions/echo/invoke", h, input, "application/octet-stream");
  ASSERT_TRUE(inv);
  EXPECT_EQ(inv->status, 200);
  EXPECT_EQ(inv->body.size(), input.size()) << "a Range: header multiplied the answer";
  auto m = d_.new_client()->Get("/metrics", h);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->status, 200);
  EXPECT_EQ(m->get_header_value("Content-Range"), "");
  EXPECT_EQ(m->body.find("multipart"), std::string::npos);
  EXPECT_LT(m->body.size(), 64u << 10);
}

// The front door under hostile clients: 200 connections trickling request
// heads that never end, and every invocation thread asleep in a slow
// program, on a daemon with 4 of them. /healthz and /metrics still answer at
// once, a further invocation is refused 429 from its head (its announced
// body never sent), and once the sleepers finish, invocations are served.
TEST_P(EmberdApi, SlowClientsAndSleepingInvocationsStarveNothing) {
  start("http_threads: 4\nhttp_queue: 0\n");
  ASSERT_EQ(d_.deploy("probe", slurp(fnprobe_path()), json{{"pool", 4}, {"timeout_ms", 60000}})->status, 201);
  ASSERT_TRUE(d_.wait_pool("probe", 4));
  std::vector<int> slow;
  for (int i = 0; i < 200; i++) {
    const int fd = connect_loopback(port_of(d_.url()));
    ASSERT_GE(fd, 0);
    const std::string part = "GET /healthz HTTP/1.1\r\nX-Slow: ";
    (void)!::write(fd, part.data(), part.size());
    slow.push_back(fd);
  }
  std::vector<std::thread> sleepers;
  std::atomic<int> slept{0};
  for (int i = 0; i < 4; i++)
    sleepers.emplace_back([&] {
      auto r = d_.new_client()->Post("/v1/functions/probe/invoke", "sleep 3000", "text/plain");
      if (r && r->status == 200 && r->body == "slept 3000\n") slept++;
    });
  for (int i = 0; i < 2000 && d_.function("probe")["invocations"]["inflight"] != 4; i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  for (int fd : slow) (void)!::write(fd, "a", 1);
  const auto t0 = std::chrono::steady_clock::now();
  auto health = d_.new_client()->Get("/healthz");
  auto metrics = d_.new_client()->Get("/metrics");
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(health && metrics);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(metrics->status, 200);
  EXPECT_LT(ms, 1500) << "/healthz and /metrics waited";
  const std::string refused = raw_http(d_.url(), "POST /v1/functions/probe/invoke HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
  EXPECT_EQ(status_of(refused), 429) << refused;
  EXPECT_NE(refused.find("Retry-After: 1"), std::string::npos) << refused;
  for (auto& t : sleepers) t.join();
  EXPECT_EQ(slept.load(), 4);
  auto after = d_.invoke("probe", "served");
  ASSERT_TRUE(after);
  EXPECT_EQ(after->body, "served");
  for (int fd : slow) ::close(fd);
}

// A host short of tasks is treated like one short of memory: emberd is
// moved into a pids cgroup with room for a few VMs beyond its own threads;
// a pool of 12 is capped to what fits, the warning names the limit, the VMs
// stay within it (no fork on the host fails), invocations are served.
TEST_P(EmberdApi, ALoweredTaskLimitCapsPoolsInsteadOfExhaustingTheHost) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (a cgroup of its own)";
  std::string dir = "/sys/fs/cgroup/pids";
  if (!controller::path_exists(dir + "/cgroup.procs")) {
    dir = "/sys/fs/cgroup";  // v2: pids must be enabled for the children
    std::ofstream(dir + "/cgroup.subtree_control") << "+pids";
  }
  dir += "/ember-test-tasks-" + std::to_string(::getpid());
  ASSERT_TRUE(std::filesystem::create_directory(dir)) << dir;
  start("http_threads: 4\nlimits:\n  host_task_reserve: 0\n");
  std::ofstream(dir + "/cgroup.procs") << d_.pid();
  const int own = std::atoi(slurp(dir + "/pids.current").c_str());
  ASSERT_GT(own, 4) << "emberd's threads are counted in " << dir;
  // Room for 3 VMs of 4 tasks (a VMM's 2 threads, KVM's worker, the jailer
  // that starts it or the helper that tears it down) and a little more.
  std::ofstream(dir + "/pids.max") << own + 14;
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // emberd samples its limits every second
  auto r = d_.deploy("probe", slurp(fnprobe_path()), json{{"pool", 12}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 201) << r->body;
  const json f = json::parse(r->body);
  EXPECT_LE(f["pool"]["target"].get<int>(), 4) << f.dump();
  EXPECT_GE(f["pool"]["target"].get<int>(), 2) << f.dump();
  EXPECT_NE(d_.log().find("pids.max of " + dir), std::string::npos) << "the warning names the limit";
  for (int i = 0; i < 6; i++) {
    auto inv = d_.invoke("probe", "task " + std::to_string(i));
    ASSERT_TRUE(inv);
    EXPECT_EQ(inv->status, 200) << inv->body;
  }
  EXPECT_EQ(std::atoi(slurp(dir + "/pids.events").substr(4).c_str()), 0) << "a fork hit pids.max";
  EXPECT_EQ(d_.log().find("Resource temporarily unavailable"), std::string::npos);
  d_.stop();
  ::rmdir((dir + "/ember").c_str());  // where the jails' cgroups were made
  ::rmdir(dir.c_str());
}

TEST_P(EmberdApi, HealthSaysHowVmsRun) {
  start();
  json h = d_.get_json("/healthz");
  ASSERT_TRUE(h.is_object());
  const std::string mode = GetParam();
  EXPECT_EQ(h["mechanism"], mode == "boot-unjailed" ? "boot" : "snapshot") << h.dump();
  EXPECT_EQ(h["jailed"], mode == "defaults" && ::geteuid() == 0) << h.dump();
  if (mode != "defaults" || ::geteuid() != 0) return;
  // A jailed function's VMs: each its own jail; the VMM, handed over by
  // ember-jailer --detach, is emberd's child, with no jailer process left.
  ASSERT_EQ(d_.deploy("j", slurp(example_image("echo")), json{{"pool", 2}})->status, 201);
  ASSERT_TRUE(d_.wait_pool("j", 2));
  json vms = d_.vms();
  ASSERT_EQ(vms.size(), 2u);
  for (const json& v : vms) {
    EXPECT_TRUE(v["jailed"].get<bool>()) << v.dump();
    const std::string status = slurp("/proc/" + std::to_string(v["pid"].get<int>()) + "/status");
    EXPECT_NE(status.find("\nPPid:\t" + std::to_string(d_.pid()) + "\n"), std::string::npos) << status;
    EXPECT_EQ(status.find("\nUid:\t0\t"), std::string::npos) << "a jailed VMM runs as root: " << status;
  }
  EXPECT_EQ(children_named(d_.pid(), "ember-jailer", true).size(), 0u) << "an ember-jailer stayed";
  EXPECT_EQ(d_.invoke("j", "through the jail")->body, "through the jail");
}

// No two live VMs share a uid, whichever function they serve: with 6 uids
// for two pools of 2, two functions deployed at once and invoked from four
// clients (every VM replaced after one use) always run as distinct uids; a
// VM that would need a uid none has left is refused (429) rather than share.
TEST_P(EmberdApi, LiveVmsNeverShareAUid) {
  if (GetParam() != "defaults" || ::geteuid() != 0) GTEST_SKIP() << "uids are per jail: jailed mode, as root";
  start("jailer:\n  uid: 420000\n  uid_count: 6\ninvocations_per_vm: 1\n");
  std::vector<std::thread> deploys;
  std::vector<long> status(2);
  for (int i = 0; i < 2; i++)
    deploys.emplace_back([&, i] {
      auto r = d_.new_client()->Put("/v1/functions/f" + std::to_string(i), {{"X-Ember-Function", R"({"pool": 2})"}},
                                    slurp(fnprobe_path()), "application/octet-stream");
      status[i] = r ? r->status : 0;
    });
  for (auto& t : deploys) t.join();
  ASSERT_EQ(status[0], 201);
  ASSERT_EQ(status[1], 201);
  std::atomic<bool> done{false};
  std::string overlap;
  size_t most = 0;
  std::thread watcher([&] {
    while (!done && overlap.empty()) {
      std::map<std::string, pid_t> by_uid;
      for (pid_t p : live_vmm_children()) {
        const std::string st = slurp("/proc/" + std::to_string(p) + "/status");  // "" once it exited
        const auto at = st.find("\nUid:\t");
        if (at == std::string::npos) continue;
        const std::string uid = st.substr(at + 6, st.find('\t', at + 6) - at - 6);
        if (by_uid.count(uid)) overlap = "VMMs " + std::to_string(by_uid[uid]) + " and " + std::to_string(p) + " both run as " + uid;
        by_uid[uid] = p;
      }
      most = std::max(most, by_uid.size());
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  std::atomic<int> ok{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 4; i++)
    clients.emplace_back([&, i] {
      auto http = d_.new_client();
      for (int n = 0; n < 5; n++) {
        auto r = http->Post("/v1/functions/f" + std::to_string(i % 2) + "/invoke", "hi", "text/plain");
        for (int again = 0; r && r->status == 429 && again < 200; again++) {  // no uid free yet: later
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
          r = http->Post("/v1/functions/f" + std::to_string(i % 2) + "/invoke", "hi", "text/plain");
        }
        if (r && r->status == 200 && r->body == "hi") ok++;
      }
    });
  for (auto& t : clients) t.join();
  done = true;
  watcher.join();
  EXPECT_EQ(overlap, "");
  EXPECT_EQ(ok.load(), 20) << "every invocation answered once a uid was free";
  EXPECT_GE(most, 3u) << "VMs of both functions ran side by side";
}

// A deploy that fails says whose fault it is: the program's (422, what it
// did instead of reading stdin) or the host's (500, what the VMM said).
TEST_P(EmberdApi, AProgramThatNeverReadsStdinIsRefusedWith422) {
  if (GetParam() == "boot-unjailed") GTEST_SKIP() << "boot mechanism: no template snapshot at deploy";
  start();
  auto r = d_.deploy("hello", slurp(std::string(EMBER_GUEST_PROGRAMS_DIR) + "/hello-musl"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 422) << r->body;
  const std::string error = json::parse(r->body)["error"];
  EXPECT_NE(error.find("the program ended (status 0) before it first waited for input"), std::string::npos) << error;
  EXPECT_NE(error.find("must read its request from stdin"), std::string::npos) << error;
  EXPECT_EQ(d_.function("hello"), json()) << "a refused function is not deployed";
}

TEST_P(EmberdApi, AHostFailureAtDeployIsA500) {
  if (GetParam() == "boot-unjailed") GTEST_SKIP() << "boot mechanism: no template snapshot at deploy";
  const std::string kernel = dir_ + "-not-a-kernel";
  std::ofstream(kernel) << "not an ELF file\n";
  start("guest_kernel: \"" + kernel + "\"\n");
  auto r = d_.deploy("echo", slurp(example_image("echo")));
  ::unlink(kernel.c_str());
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500) << r->body;
  const std::string error = json::parse(r->body)["error"];
  EXPECT_NE(error.find("ember-vmm: "), std::string::npos) << error;
  EXPECT_EQ(error.find("must read its request"), std::string::npos) << error;
}

// The program's words cannot pose as the host's: it prints ember-jailer's
// kind of line and exits 125 (the VMM's and the jailer's failure status)
// before reading stdin. That is the program's failure, a 422.
TEST_P(EmberdApi, AProgramThatPrintsTheJailersWordsIsStillA422) {
  if (GetParam() == "boot-unjailed") GTEST_SKIP() << "boot mechanism: no template snapshot at deploy";
  start();
  const std::string forged = "ember-jailer: step 9: cannot bind /dev/kvm into the jail";
  auto r = d_.deploy("forger", slurp(std::string(EMBER_GUEST_PROGRAMS_DIR) + "/exit_code-musl"),
                     json{{"args", {"125", forged}}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 422) << r->body;
  const std::string error = json::parse(r->body)["error"];
  EXPECT_EQ(error.find("cannot bind"), std::string::npos) << error;
  EXPECT_NE(error.find("must read its request from stdin"), std::string::npos) << error;
}

TEST_P(EmberdApi, CliAgainstARealDaemon) {
  start();
  auto ember = [&](std::vector<std::string> args, const std::string& input = "") {
    args.insert(args.begin(), {ctl_bin("ember"), "--url", d_.url()});
    return run_process(args, input);
  };
  auto dep = ember({"deploy", "probe", fnprobe_path(), "--pool", "1", "--env", "WHO=cli", "--memory-mib", "64"});
  EXPECT_EQ(dep.status, 0) << dep.err;
  EXPECT_NE(dep.out.find("deployed probe version 1"), std::string::npos) << dep.out;
  auto inv = ember({"invoke", "probe"}, "exit 9");
  EXPECT_EQ(inv.status, 9);
  EXPECT_EQ(inv.out, "exit 9\n");
  auto env = ember({"invoke", "probe"}, "env WHO");
  EXPECT_EQ(env.status, 0);
  EXPECT_EQ(env.out, "cli\n");
  auto se = ember({"invoke", "probe", "--stderr"}, "stderr");
  EXPECT_EQ(se.status, 3);
  EXPECT_EQ(se.out, "out\n");
  EXPECT_NE(se.err.find("err"), std::string::npos);
  auto js = ember({"--json", "invoke", "probe"}, "exit 4");
  EXPECT_EQ(js.status, 4);
  EXPECT_EQ(json::parse(js.out)["stdout"], "exit 4\n");
  auto ls = ember({"ls"});
  EXPECT_EQ(ls.status, 0);
  EXPECT_NE(ls.out.find("probe"), std::string::npos);
  auto lsj = ember({"--json", "ls"});
  EXPECT_EQ(json::parse(lsj.out)[0]["config"]["memory_mib"], 64);
  ASSERT_TRUE(d_.wait_pool("probe", 1));
  auto vms = ember({"vms"});
  EXPECT_EQ(vms.status, 0);
  EXPECT_NE(vms.out.find("probe"), std::string::npos);
  auto missing = ember({"invoke", "nope"}, "x");
  EXPECT_EQ(missing.status, 125);
  EXPECT_NE(missing.err.find("404"), std::string::npos);
  // With --json, a failure is JSON on stdout too.
  auto missing_json = ember({"--json", "invoke", "nope"}, "x");
  EXPECT_EQ(missing_json.status, 125);
  const json mj = json::parse(missing_json.out, nullptr, false);
  EXPECT_EQ(mj.value("http_status", 0), 404) << missing_json.out;
  EXPECT_NE(mj.value("error", "").find("no function named 'nope'"), std::string::npos) << missing_json.out;
  auto rm = ember({"rm", "probe"});
  EXPECT_EQ(rm.status, 0);
  EXPECT_EQ(ember({"rm", "probe"}).status, 1);
  auto usage = ember({"deploy", "x"});
  EXPECT_EQ(usage.status, 2);
  auto down = run_process({ctl_bin("ember"), "--url", "http://127.0.0.1:1", "ls"});
  EXPECT_EQ(down.status, 1);
  EXPECT_NE(down.err.find("cannot reach emberd"), std::string::npos);
  auto down_json = run_process({ctl_bin("ember"), "--url", "http://127.0.0.1:1", "--json", "ls"});
  EXPECT_EQ(down_json.status, 1);
  EXPECT_NE(json::parse(down_json.out, nullptr, false).value("error", "").find("cannot reach emberd"), std::string::npos)
      << down_json.out;
}

TEST_P(EmberdApi, RestartKeepsFunctionsAndLeavesNoOrphans) {
  start();
  ASSERT_EQ(d_.deploy("a", slurp(fnprobe_path()), json{{"pool", 2}, {"env", {{"N", "a"}}}})->status, 201);
  ASSERT_EQ(d_.deploy("b", slurp(example_image("echo")), json{{"pool", 1}})->status, 201);
  ASSERT_EQ(d_.deploy("b", slurp(example_image("echo")), json{{"pool", 1}})->status, 201);  // version 2
  ASSERT_TRUE(d_.wait_pool("a", 2));
  ASSERT_TRUE(d_.wait_pool("b", 1));
  const VmTraces before = vm_traces();
  ASSERT_EQ(vmm_pids().size(), 3u);

  // A crash: emberd dies, its VMMs (and jailers, jails, cgroups) are orphaned.
  d_.stop(SIGKILL);
  start();
  for (pid_t p : before.pids) EXPECT_FALSE(process_alive(p)) << "orphaned process " << p << " survived the restart";
  for (auto& p : before.paths) EXPECT_FALSE(controller::path_exists(p)) << "orphaned " << p << " survived the restart";
  // (VMs booted per invocation see EOF on stdin when emberd dies and finish
  // on their own; restored ones wait on vsock and are killed as orphans.)
  json fns = d_.get_json("/v1/functions");
  ASSERT_EQ(fns.size(), 2u);
  EXPECT_EQ(d_.function("b")["version"], 2);
  EXPECT_EQ(d_.invoke("a", "env N")->body, "a\n");
  EXPECT_EQ(d_.invoke("b", "after the crash")->body, "after the crash");
  ASSERT_TRUE(d_.wait_pool("a", 2));

  // A graceful stop leaves no VMM either.
  const VmTraces running = vm_traces();
  ASSERT_FALSE(running.pids.empty());
  d_.stop(SIGTERM);
  for (pid_t p : running.pids) EXPECT_FALSE(process_alive(p)) << "process " << p << " outlived emberd";
  for (auto& p : running.paths) EXPECT_FALSE(controller::path_exists(p)) << p << " outlived emberd";
  EXPECT_TRUE(controller::path_exists(dir_ + "/functions/a/function.json"));
  start();
  EXPECT_EQ(d_.invoke("b", "third start")->body, "third start");
}

TEST_P(EmberdApi, NoVmOutlivesAKilledEmberd) {
  start();
  ASSERT_EQ(d_.deploy("a", slurp(fnprobe_path()), json{{"pool", 2}})->status, 201);
  ASSERT_EQ(d_.deploy("b", slurp(example_image("echo")), json{{"pool", 1}})->status, 201);
  ASSERT_TRUE(d_.wait_pool("a", 2));
  ASSERT_TRUE(d_.wait_pool("b", 1));
  const std::vector<pid_t> pids = vmm_pids();
  ASSERT_EQ(pids.size(), 3u);
  // SIGKILL: emberd cleans nothing up; the kernel must (--die-with-parent).
  d_.stop(SIGKILL);
  const auto killed = std::chrono::steady_clock::now();
  auto any_alive = [&] { return std::any_of(pids.begin(), pids.end(), [](pid_t p) { return process_alive(p); }); };
  // A second on a KVM host; the VMs' teardown is slower under emulation.
  while (any_alive() && std::chrono::steady_clock::now() - killed < std::chrono::seconds(10))
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - killed).count();
  for (pid_t p : pids) EXPECT_FALSE(process_alive(p)) << "VMM " << p << " outlived emberd by " << ms << " ms";
  std::printf("VMMs gone %lld ms after emberd was killed\n", static_cast<long long>(ms));
}

TEST_P(EmberdApi, DeleteRemovesVmsAndFiles) {
  start();
  ASSERT_EQ(d_.deploy("gone", slurp(fnprobe_path()), json{{"pool", 3}})->status, 201);
  ASSERT_TRUE(d_.wait_pool("gone", 3));
  std::vector<pid_t> pids = vmm_pids();
  auto del = d_.http().Delete("/v1/functions/gone");
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 204);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  for (pid_t p : pids) EXPECT_FALSE(process_alive(p));
  EXPECT_EQ(d_.vms().size(), 0u);
  EXPECT_FALSE(controller::path_exists(dir_ + "/functions/gone"));
  EXPECT_EQ(d_.invoke("gone", "x")->status, 404);
  // Gone after a restart too.
  d_.stop();
  start();
  EXPECT_EQ(d_.get_json("/v1/functions").size(), 0u);
}

TEST_P(EmberdApi, BadConfigIsAClearStartupError) {
  const std::string yaml = dir_ + "-bad.yaml";
  std::ofstream(yaml) << "limits:\n  max_pool: lots\n";
  auto r = run_process({ctl_bin("emberd"), "--config", yaml, "--state-dir", dir_});
  ::unlink(yaml.c_str());
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("limits.max_pool"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(":2"), std::string::npos) << r.err;
  // Start-up checks: the guest kernel exists; as root, the jailer exists
  // (VMs must never run unjailed as root by accident).
  struct Case {
    std::string yaml;
    const char* needle;
    bool root_only;
  } cases[] = {
      {"guest_kernel: /nonexistent/ember-guest.elf\n", "the guest kernel /nonexistent/ember-guest.elf is not a readable file", false},
      {"jailer:\n  binary: /nonexistent/ember-jailer\n", "VMs would run unjailed as root", true},
  };
  for (const auto& c : cases) {
    if (c.root_only && ::geteuid() != 0) continue;
    std::ofstream(yaml) << c.yaml;
    auto e = run_process({ctl_bin("emberd"), "--config", yaml, "--state-dir", dir_ + "-refused", "--listen", "127.0.0.1:0"});
    ::unlink(yaml.c_str());
    std::filesystem::remove_all(dir_ + "-refused");
    EXPECT_EQ(e.status, 1) << c.yaml << e.err;
    EXPECT_NE(e.err.find(c.needle), std::string::npos) << e.err;
  }
  // Two daemons on one state directory: the second refuses.
  start();
  auto second = run_process({ctl_bin("emberd"), "--state-dir", dir_, "--listen", "127.0.0.1:0"});
  EXPECT_EQ(second.status, 1);
  EXPECT_NE(second.err.find("another emberd"), std::string::npos) << second.err;
}

INSTANTIATE_TEST_SUITE_P(Modes, EmberdApi, ::testing::ValuesIn(emberd_modes()),
                         [](const ::testing::TestParamInfo<std::string>& i) {
                           std::string n = i.param;
                           for (auto& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

}  // namespace
}  // namespace ember::testing
