// emberd's configuration: YAML (yaml-cpp), every key optional. The defaults
// below are the documented behaviour with no file at all (controller/README.md
// lists them); unknown keys and bad values are errors at start-up that name
// the key and, where there is a file, its line.
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"
#include "controller/log.h"

namespace ember::controller {

enum class JailerMode { kAuto, kOn, kOff };

// What a function gets when its deploy does not say.
struct FunctionDefaults {
  uint32_t memory_mib = 128;
  uint32_t vcpus = 1;
  uint32_t timeout_ms = 10000;
  uint32_t pool = 1;
  uint32_t max_concurrency = 64;
};

struct Limits {
  uint32_t max_functions = 1000;
  uint64_t max_image_bytes = 256ull << 20;     // PUT /v1/functions body
  uint64_t max_request_bytes = 6ull << 20;     // invoke body (the program's stdin)
  uint64_t max_output_bytes = 16ull << 20;     // stdout + stderr of one invocation
  uint32_t max_memory_mib = 3072;              // per function (ember-vmm allows 16..3072, even)
  uint32_t max_timeout_ms = 900000;
  uint32_t max_pool = 10000;                   // per function
  uint32_t max_concurrency = 4096;             // per function
  uint32_t max_inflight = 128;                 // invocations in progress, whole daemon (at most
                                               // http_threads; follows it when not set)
  uint32_t max_vms = 20000;                    // VMM processes alive, whole daemon
  uint64_t memory_budget_mib = 0;              // host memory for VMs; 0: 80% of MemTotal
  uint32_t vm_host_overhead_kib = 512;         // per VM, beyond its VMM's private pages: the kernel's
                                               // share (KVM, tasks, page tables, jail)
  uint64_t http_body_memory_mib = 1024;        // request and answer bodies emberd holds at once; beyond, 429
  uint32_t host_task_reserve = 1024;           // tasks kept free for the host under every task limit
                                               // (kernel.pid_max, threads-max, pids.max; at most a quarter of each)
};

struct JailerConfig {
  JailerMode mode = JailerMode::kAuto;  // auto: jail every VM when emberd runs as root (the jailer must exist)
  std::string binary;                   // empty: ember-jailer next to emberd
  std::string chroot_base = "/srv/ember";
  uint32_t uid = 200000;                // VMs run as uid .. uid + uid_count - 1 (one per VM, round robin)
  uint32_t uid_count = 65536;
  uint32_t gid = 200000;
  int cgroup_version = 0;               // 0: what the host has (v2 if it has memory and pids, else v1)
  uint32_t memory_overhead_mib = 64;    // cgroup memory limit = function memory + this
  uint32_t cpu_quota_pct = 0;           // CPU per VM, 100 = one core (0: no limit; see controller/README.md)
  uint32_t pids_max = 16;               // VMM threads and helpers
  uint32_t no_file = 256;               // RLIMIT_NOFILE inside the jail
  uint32_t log_max_mib = 16;            // RLIMIT_FSIZE of a VMM: its log (what a guest prints) stops there
                                        // (a template boot may also write its snapshot)
};

// Threads for deploys, deletes and listings (an invocation never waits for them).
constexpr uint32_t kControlThreads = 16;

struct Config {
  std::string listen = "127.0.0.1:8080";  // host:port; port 0 picks a free one (written to STATE_DIR/emberd.addr)
  std::string state_dir;                  // default: /var/lib/ember as root, else ~/.local/state/ember
  LogLevel log_level = LogLevel::kInfo;
  std::string vmm_binary;                 // empty: ember-vmm next to emberd
  std::string guest_kernel;               // empty: ember-vmm's default (ember-guest.elf next to it)
  uint32_t http_threads = 128;            // invocations worked on at once (each holds a thread until answered;
                                          // deploys and listings have kControlThreads of their own)
  uint32_t http_queue = 1024;             // requests waiting for a thread, per kind; beyond, 429 from the request's head
  uint32_t http_connections = 10000;      // open client connections (one event loop reads them all)
  uint32_t http_idle_timeout_s = 30;      // a connection that sends nothing for this long is closed
  uint32_t refill_workers = 2;            // threads that start pooled VMs in the background
  uint32_t deploy_timeout_ms = 120000;    // boot to ready (template snapshot) at deploy
  std::string mechanism = "auto";         // auto | snapshot | boot (see controller/README.md)
  uint32_t invocations_per_vm = 100;      // snapshot mechanism: a VM serves up to N invocations of its
                                          // function, reset in place to the template between them (1: none)
  uint32_t idle_vm_ms = 10000;            // a VM parked beyond its function's pool (kept after a burst of
                                          // concurrent invocations) is stopped once idle this long
  FunctionDefaults defaults;
  Limits limits;
  JailerConfig jailer;
};

// The defaults, with state_dir filled in for the current user.
Config default_config();

// Parses YAML text on top of default_config(). `origin` names the source in
// errors ("FILE" or "<string>").
Result<Config> parse_config(const std::string& yaml, const std::string& origin = "<config>");
Result<Config> load_config_file(const std::string& path);

// Checks cross-field constraints (also run by parse_config); errors name the key.
Result<void> validate_config(const Config& c);

// "host:port" → host, port. Accepts "[::1]:80" and ":8080" (all interfaces).
Result<void> split_listen(const std::string& listen, std::string* host, int* port);

// The effective configuration as YAML (emberd --print-config).
std::string config_to_yaml(const Config& c);

}  // namespace ember::controller
