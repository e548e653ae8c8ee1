// emberd's YAML configuration: defaults with no file, every key, and clear
// errors for unknown keys and bad values.
#include <gtest/gtest.h>

#include "controller/config.h"

namespace ember::controller {
namespace {

TEST(ControllerConfig, DefaultsNeedNoFile) {
  auto c = parse_config("", "<empty>");
  ASSERT_TRUE(c) << c.message();
  EXPECT_EQ(c->listen, "127.0.0.1:8080");
  EXPECT_FALSE(c->state_dir.empty());
  EXPECT_EQ(c->state_dir[0], '/');
  EXPECT_EQ(c->defaults.memory_mib, 128u);
  EXPECT_EQ(c->defaults.pool, 1u);
  EXPECT_EQ(c->jailer.mode, JailerMode::kAuto);
  EXPECT_EQ(c->log_level, LogLevel::kInfo);
  EXPECT_TRUE(validate_config(default_config()));
}

TEST(ControllerConfig, EveryKey) {
  auto c = parse_config(R"(
listen: 0.0.0.0:9000
state_dir: /tmp/ember-test-state
log_level: debug
vmm_binary: /opt/ember/ember-vmm
guest_kernel: /opt/ember/ember-guest.elf
http_threads: 256
http_queue: 32
refill_workers: 3
deploy_timeout_ms: 5000
mechanism: boot
defaults: {memory_mib: 64, vcpus: 1, timeout_ms: 2000, pool: 4, max_concurrency: 8}
limits:
  max_functions: 10
  max_image_bytes: 1048576
  max_request_bytes: 1024
  max_output_bytes: 4096
  max_memory_mib: 512
  max_timeout_ms: 60000
  max_pool: 100
  max_concurrency: 50
  max_inflight: 200
  max_vms: 300
  memory_budget_mib: 2048
  vm_host_overhead_kib: 640
jailer:
  enabled: false
  binary: /opt/ember/ember-jailer
  chroot_base: /srv/jail
  uid: 1000
  uid_count: 100
  gid: 1000
  cgroup_version: 1
  memory_overhead_mib: 16
  cpu_quota_pct: 50
  pids_max: 8
  no_file: 128
)");
  ASSERT_TRUE(c) << c.message();
  EXPECT_EQ(c->listen, "0.0.0.0:9000");
  EXPECT_EQ(c->state_dir, "/tmp/ember-test-state");
  EXPECT_EQ(c->log_level, LogLevel::kDebug);
  EXPECT_EQ(c->mechanism, "boot");
  EXPECT_EQ(c->http_threads, 256u);
  EXPECT_EQ(c->http_queue, 32u);
  EXPECT_EQ(c->limits.max_inflight, 200u);
  EXPECT_EQ(c->defaults.pool, 4u);
  EXPECT_EQ(c->limits.max_request_bytes, 1024u);
  EXPECT_EQ(c->limits.memory_budget_mib, 2048u);
  EXPECT_EQ(c->limits.vm_host_overhead_kib, 640u);
  EXPECT_EQ(c->jailer.mode, JailerMode::kOff);
  EXPECT_EQ(c->jailer.uid_count, 100u);
  EXPECT_EQ(c->jailer.cgroup_version, 1);
  // The printed form parses back to the same configuration.
  auto again = parse_config(config_to_yaml(*c));
  ASSERT_TRUE(again) << again.message();
  EXPECT_EQ(config_to_yaml(*again), config_to_yaml(*c));
}

TEST(ControllerConfig, UnknownKeysAreErrorsWithTheirLine) {
  auto c = parse_config("listen: 127.0.0.1:1\nlimits:\n  max_pol: 3\n", "ember.yaml");
  ASSERT_FALSE(c);
  EXPECT_NE(c.message().find("ember.yaml:3"), std::string::npos) << c.message();
  EXPECT_NE(c.message().find("limits.max_pol"), std::string::npos) << c.message();
  EXPECT_NE(c.message().find("unknown key"), std::string::npos) << c.message();
  EXPECT_FALSE(parse_config("colour: blue\n"));
  EXPECT_FALSE(parse_config("jailer: {enable: true}\n"));
}

TEST(ControllerConfig, BadValuesAreErrors) {
  struct Case {
    const char* yaml;
    const char* needle;
  } cases[] = {
      {"http_threads: many\n", "not a whole number"},
      {"http_threads: -4\n", "not a whole number"},
      {"http_threads: 1\n", "out of range"},
      {"log_level: loud\n", "debug, info, warn or error"},
      {"listen: localhost\n", "HOST:PORT"},
      {"listen: 127.0.0.1:70000\n", "0..65535"},
      {"state_dir: relative/dir\n", "absolute"},
      {"defaults: {memory_mib: 33}\n", "even"},
      {"defaults: {vcpus: 2}\n", "out of range"},
      {"defaults: {pool: 50}\nlimits: {max_pool: 10}\n", "max_pool"},
      {"jailer: {enabled: maybe}\n", "auto, true or false"},
      {"jailer: {cgroup_version: 3}\n", "out of range"},
      {"mechanism: teleport\n", "auto, snapshot or boot"},
      {"limits: [1, 2]\n", "mapping"},
      {"listen: [a\n", "not valid YAML"},
      {"limits: {max_inflight: 129}\n", "raise http_threads"},
      {"http_threads: 8\nlimits: {max_inflight: 9}\n", "above http_threads (8)"},
      {"http_queue: -1\n", "not a whole number"},
      {"state_dir: /a/very/long/path/that/goes/on/and/on/and/on/past/sixty/characters\n", "60 characters"},
  };
  for (const auto& tc : cases) {
    auto c = parse_config(tc.yaml, "f.yaml");
    ASSERT_FALSE(c) << tc.yaml;
    EXPECT_NE(c.message().find(tc.needle), std::string::npos) << tc.yaml << " -> " << c.message();
  }
}

// An invocation holds an HTTP thread: the daemon-wide limit follows the
// thread count unless it is set lower.
TEST(ControllerConfig, MaxInflightFollowsHttpThreads) {
  EXPECT_EQ(default_config().limits.max_inflight, default_config().http_threads);
  auto c = parse_config("http_threads: 512\n");
  ASSERT_TRUE(c) << c.message();
  EXPECT_EQ(c->limits.max_inflight, 512u);
  c = parse_config("http_threads: 512\nlimits: {max_inflight: 100}\n");
  ASSERT_TRUE(c) << c.message();
  EXPECT_EQ(c->limits.max_inflight, 100u);
}

TEST(ControllerConfig, SplitListen) {
  std::string h;
  int p = -1;
  ASSERT_TRUE(split_listen("127.0.0.1:8080", &h, &p));
  EXPECT_EQ(h, "127.0.0.1");
  EXPECT_EQ(p, 8080);
  ASSERT_TRUE(split_listen(":0", &h, &p));
  EXPECT_EQ(h, "0.0.0.0");
  EXPECT_EQ(p, 0);
  ASSERT_TRUE(split_listen("[::1]:80", &h, &p));
  EXPECT_EQ(h, "::1");
  EXPECT_FALSE(split_listen("127.0.0.1:x", &h, &p));
}

TEST(ControllerConfig, LoadFileErrorsNameTheFile) {
  auto c = load_config_file("/nonexistent/ember.yaml");
  ASSERT_FALSE(c);
  EXPECT_NE(c.message().find("/nonexistent/ember.yaml"), std::string::npos);
}

}  // namespace
}  // namespace ember::controller
