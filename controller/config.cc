#include "controller/config.h"

#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cstdlib>
#include <set>
#include <sstream>

#include "controller/fsutil.h"

namespace ember::controller {

Config default_config() {
  Config c;
  if (::geteuid() == 0) {
    c.state_dir = "/var/lib/ember";
  } else if (const char* xdg = std::getenv("XDG_STATE_HOME"); xdg && *xdg == '/') {
    c.state_dir = std::string(xdg) + "/ember";
  } else if (const char* home = std::getenv("HOME"); home && *home == '/') {
    c.state_dir = std::string(home) + "/.local/state/ember";
  } else {
    c.state_dir = "/tmp/ember-" + std::to_string(::geteuid());
  }
  return c;
}

namespace {

// Where a node came from, for error messages: "FILE:LINE: key".
struct Walker {
  std::string origin;

  std::string where(const YAML::Node& n, const std::string& key) const {
    const auto m = n.Mark();
    if (m.line >= 0) return origin + ":" + std::to_string(m.line + 1) + ": " + key;
    return origin + ": " + key;
  }

  Result<void> known_keys(const YAML::Node& map, const std::string& path, const std::set<std::string>& known) const {
    if (!map.IsMap()) return Error{where(map, path.empty() ? "top level" : path) + ": expected a mapping of keys"};
    for (const auto& kv : map) {
      const std::string k = kv.first.Scalar();
      if (!known.count(k)) {
        std::string list;
        for (const auto& s : known) list += (list.empty() ? "" : ", ") + s;
        return Error{where(kv.first, path.empty() ? k : path + "." + k) + ": unknown key (known: " + list + ")"};
      }
    }
    return Ok();
  }

  Result<std::string> scalar(const YAML::Node& n, const std::string& key) const {
    if (!n.IsScalar()) return Error{where(n, key) + ": expected a single value"};
    return n.Scalar();
  }

  template <typename T>
  Result<void> uint(const YAML::Node& map, const std::string& path, const char* key, T* out, uint64_t min,
                    uint64_t max) const {
    const YAML::Node n = map[key];
    if (!n) return Ok();
    const std::string full = path.empty() ? key : path + "." + key;
    EMBER_TRY(std::string s, scalar(n, full));
    uint64_t v = 0;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || p != s.data() + s.size())
      return Error{where(n, full) + ": '" + s + "' is not a whole number"};
    if (v < min || v > max)
      return Error{where(n, full) + ": " + s + " is out of range (" + std::to_string(min) + ".." + std::to_string(max) +
                   ")"};
    *out = static_cast<T>(v);
    return Ok();
  }

  Result<void> str(const YAML::Node& map, const std::string& path, const char* key, std::string* out) const {
    const YAML::Node n = map[key];
    if (!n) return Ok();
    EMBER_TRY(*out, scalar(n, path.empty() ? key : path + "." + key));
    return Ok();
  }
};

}  // namespace

Result<void> split_listen(const std::string& listen, std::string* host, int* port) {
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos) return Error{"listen '" + listen + "': expected HOST:PORT"};
  std::string h = listen.substr(0, colon);
  const std::string p = listen.substr(colon + 1);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  if (h.empty()) h = "0.0.0.0";
  int v = -1;
  const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
  if (p.empty() || ec != std::errc() || end != p.data() + p.size() || v < 0 || v > 65535)
    return Error{"listen '" + listen + "': port must be 0..65535"};
  *host = h;
  *port = v;
  return Ok();
}

Result<void> validate_config(const Config& c) {
  std::string h;
  int p;
  EMBER_TRY_VOID(split_listen(c.listen, &h, &p));
  if (c.state_dir.empty() || c.state_dir[0] != '/') return Error{"state_dir '" + c.state_dir + "': must be an absolute path"};
  // VM sockets live under STATE_DIR/run/<vm id>/; a Unix socket path has 108 bytes.
  if (c.state_dir.size() > 60)
    return Error{"state_dir '" + c.state_dir + "': longer than 60 characters (VM Unix sockets live under it, and a "
                 "socket path is limited to 107 bytes)"};
  if (c.jailer.chroot_base.empty() || c.jailer.chroot_base[0] != '/')
    return Error{"jailer.chroot_base '" + c.jailer.chroot_base + "': must be an absolute path"};
  if (c.jailer.chroot_base.size() > 40)
    return Error{"jailer.chroot_base '" + c.jailer.chroot_base + "': longer than 40 characters (VM sockets live under it)"};
  if (c.mechanism != "auto" && c.mechanism != "snapshot" && c.mechanism != "boot")
    return Error{"mechanism '" + c.mechanism + "': expected auto, snapshot or boot"};
  const auto& d = c.defaults;
  const auto& l = c.limits;
  if (d.memory_mib % 2 != 0 || d.memory_mib < 16 || d.memory_mib > l.max_memory_mib)
    return Error{"defaults.memory_mib " + std::to_string(d.memory_mib) + ": must be an even number from 16 to limits.max_memory_mib (" +
                 std::to_string(l.max_memory_mib) + ")"};
  if (d.timeout_ms > l.max_timeout_ms) return Error{"defaults.timeout_ms is above limits.max_timeout_ms"};
  if (d.pool > l.max_pool) return Error{"defaults.pool is above limits.max_pool"};
  if (d.max_concurrency > l.max_concurrency) return Error{"defaults.max_concurrency is above limits.max_concurrency"};
  if (l.max_inflight > c.http_threads)
    return Error{"limits.max_inflight (" + std::to_string(l.max_inflight) + ") is above http_threads (" +
                 std::to_string(c.http_threads) + "): an invocation holds an HTTP thread, so raise http_threads too"};
  if (c.jailer.uid == 0 || c.jailer.gid == 0) return Error{"jailer.uid and jailer.gid must not be 0 (root)"};
  if (static_cast<uint64_t>(c.jailer.uid) + c.jailer.uid_count > 0xfffffffeull)
    return Error{"jailer.uid + jailer.uid_count overflows the uid range"};
  return Ok();
}

Result<Config> parse_config(const std::string& yaml, const std::string& origin) {
  Config c = default_config();
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    return Error{origin + ": not valid YAML: " + e.what()};
  }
  Walker w{origin};
  if (root.IsNull()) return c;  // an empty file: all defaults
  try {
    EMBER_TRY_VOID(w.known_keys(root, "",
                                {"listen", "state_dir", "log_level", "vmm_binary", "guest_kernel", "http_threads", "http_queue", "http_connections", "http_idle_timeout_s",
                                 "refill_workers", "deploy_timeout_ms", "mechanism", "invocations_per_vm", "idle_vm_ms", "defaults",
                                 "limits", "jailer"}));
    EMBER_TRY_VOID(w.str(root, "", "listen", &c.listen));
    EMBER_TRY_VOID(w.str(root, "", "state_dir", &c.state_dir));
    std::string level;
    EMBER_TRY_VOID(w.str(root, "", "log_level", &level));
    if (!level.empty()) {
      auto l = parse_log_level(level);
      if (!l) return Error{w.where(root["log_level"], "log_level") + ": " + l.message()};
      c.log_level = *l;
    }
    EMBER_TRY_VOID(w.str(root, "", "vmm_binary", &c.vmm_binary));
    EMBER_TRY_VOID(w.str(root, "", "guest_kernel", &c.guest_kernel));
    EMBER_TRY_VOID(w.str(root, "", "mechanism", &c.mechanism));
    EMBER_TRY_VOID(w.uint(root, "", "http_threads", &c.http_threads, 4, 4096));
    EMBER_TRY_VOID(w.uint(root, "", "http_queue", &c.http_queue, 0, 1000000));
    EMBER_TRY_VOID(w.uint(root, "", "http_connections", &c.http_connections, 16, 1000000));
    EMBER_TRY_VOID(w.uint(root, "", "http_idle_timeout_s", &c.http_idle_timeout_s, 1, 3600));
    c.limits.max_inflight = c.http_threads;  // unless limits.max_inflight says less
    EMBER_TRY_VOID(w.uint(root, "", "refill_workers", &c.refill_workers, 1, 64));
    EMBER_TRY_VOID(w.uint(root, "", "deploy_timeout_ms", &c.deploy_timeout_ms, 100, 3600000));
    EMBER_TRY_VOID(w.uint(root, "", "invocations_per_vm", &c.invocations_per_vm, 1, 1000000));
    EMBER_TRY_VOID(w.uint(root, "", "idle_vm_ms", &c.idle_vm_ms, 0, 86400000));

    if (const YAML::Node d = root["defaults"]) {
      EMBER_TRY_VOID(w.known_keys(d, "defaults", {"memory_mib", "vcpus", "timeout_ms", "pool", "max_concurrency"}));
      EMBER_TRY_VOID(w.uint(d, "defaults", "memory_mib", &c.defaults.memory_mib, 16, 3072));
      EMBER_TRY_VOID(w.uint(d, "defaults", "vcpus", &c.defaults.vcpus, 1, 1));
      EMBER_TRY_VOID(w.uint(d, "defaults", "timeout_ms", &c.defaults.timeout_ms, 1, 86400000));
      EMBER_TRY_VOID(w.uint(d, "defaults", "pool", &c.defaults.pool, 0, 1000000));
      EMBER_TRY_VOID(w.uint(d, "defaults", "max_concurrency", &c.defaults.max_concurrency, 1, 1000000));
    }
    if (const YAML::Node l = root["limits"]) {
      EMBER_TRY_VOID(w.known_keys(l, "limits",
                                  {"max_functions", "max_image_bytes", "max_request_bytes", "max_output_bytes",
                                   "max_memory_mib", "max_timeout_ms", "max_pool", "max_concurrency", "max_inflight",
                                   "max_vms", "memory_budget_mib", "vm_host_overhead_kib", "host_task_reserve",
                                   "http_body_memory_mib"}));
      auto& x = c.limits;
      EMBER_TRY_VOID(w.uint(l, "limits", "max_functions", &x.max_functions, 1, 1000000));
      EMBER_TRY_VOID(w.uint(l, "limits", "max_image_bytes", &x.max_image_bytes, 4096, 4ull << 30));
      EMBER_TRY_VOID(w.uint(l, "limits", "max_request_bytes", &x.max_request_bytes, 0, 1ull << 30));
      EMBER_TRY_VOID(w.uint(l, "limits", "max_output_bytes", &x.max_output_bytes, 1024, 1ull << 30));
      EMBER_TRY_VOID(w.uint(l, "limits", "max_memory_mib", &x.max_memory_mib, 16, 3072));
      EMBER_TRY_VOID(w.uint(l, "limits", "max_timeout_ms", &x.max_timeout_ms, 1, 86400000));
      EMBER_TRY_VOID(w.uint(l, "limits", "max_pool", &x.max_pool, 0, 1000000));
      EMBER_TRY_VOID(w.uint(l, "limits", "max_concurrency", &x.max_concurrency, 1, 1000000));
      EMBER_TRY_VOID(w.uint(l, "limits", "max_inflight", &x.max_inflight, 1, 1000000));
      EMBER_TRY_VOID(w.uint(l, "limits", "max_vms", &x.max_vms, 1, 10000000));
      EMBER_TRY_VOID(w.uint(l, "limits", "memory_budget_mib", &x.memory_budget_mib, 0, 1ull << 40));
      EMBER_TRY_VOID(w.uint(l, "limits", "vm_host_overhead_kib", &x.vm_host_overhead_kib, 0, 1u << 20));
      EMBER_TRY_VOID(w.uint(l, "limits", "host_task_reserve", &x.host_task_reserve, 0, 1u << 22));
      EMBER_TRY_VOID(w.uint(l, "limits", "http_body_memory_mib", &x.http_body_memory_mib, 16, 1u << 24));
    }
    if (const YAML::Node j = root["jailer"]) {
      EMBER_TRY_VOID(w.known_keys(j, "jailer",
                                  {"enabled", "binary", "chroot_base", "uid", "uid_count", "gid", "cgroup_version",
                                   "memory_overhead_mib", "cpu_quota_pct", "pids_max", "no_file", "log_max_mib"}));
      auto& x = c.jailer;
      if (const YAML::Node e = j["enabled"]) {
        EMBER_TRY(std::string s, w.scalar(e, "jailer.enabled"));
        if (s == "auto") x.mode = JailerMode::kAuto;
        else if (s == "true" || s == "yes" || s == "on") x.mode = JailerMode::kOn;
        else if (s == "false" || s == "no" || s == "off") x.mode = JailerMode::kOff;
        else return Error{w.where(e, "jailer.enabled") + ": '" + s + "': expected auto, true or false"};
      }
      EMBER_TRY_VOID(w.str(j, "jailer", "binary", &x.binary));
      EMBER_TRY_VOID(w.str(j, "jailer", "chroot_base", &x.chroot_base));
      EMBER_TRY_VOID(w.uint(j, "jailer", "uid", &x.uid, 1, 0xfffffffe));
      EMBER_TRY_VOID(w.uint(j, "jailer", "uid_count", &x.uid_count, 1, 1u << 24));
      EMBER_TRY_VOID(w.uint(j, "jailer", "gid", &x.gid, 1, 0xfffffffe));
      EMBER_TRY_VOID(w.uint(j, "jailer", "cgroup_version", &x.cgroup_version, 0, 2));
      if (x.cgroup_version == 0 && j["cgroup_version"] && j["cgroup_version"].Scalar() != "0")
        return Error{w.where(j["cgroup_version"], "jailer.cgroup_version") + ": expected 1, 2 or 0 (auto)"};
      EMBER_TRY_VOID(w.uint(j, "jailer", "memory_overhead_mib", &x.memory_overhead_mib, 0, 1u << 20));
      EMBER_TRY_VOID(w.uint(j, "jailer", "cpu_quota_pct", &x.cpu_quota_pct, 0, 100000));
      EMBER_TRY_VOID(w.uint(j, "jailer", "pids_max", &x.pids_max, 1, 1u << 22));
      EMBER_TRY_VOID(w.uint(j, "jailer", "log_max_mib", &x.log_max_mib, 1, 1u << 20));
      EMBER_TRY_VOID(w.uint(j, "jailer", "no_file", &x.no_file, 16, 1u << 20));
    }
  } catch (const YAML::Exception& e) {
    return Error{origin + ": " + e.what()};
  }
  if (auto v = validate_config(c); !v) return Error{origin + ": " + v.message()};
  return c;
}

Result<Config> load_config_file(const std::string& path) {
  EMBER_TRY(std::string text, read_file(path, 1 << 20));
  return parse_config(text, path);
}

std::string config_to_yaml(const Config& c) {
  std::ostringstream o;
  o << "listen: \"" << c.listen << "\"\n"
    << "state_dir: \"" << c.state_dir << "\"\n"
    << "log_level: " << log_level_name(c.log_level) << "\n"
    << "vmm_binary: \"" << c.vmm_binary << "\"\n"
    << "guest_kernel: \"" << c.guest_kernel << "\"\n"
    << "http_threads: " << c.http_threads << "\n"
    << "http_queue: " << c.http_queue << "\n"
    << "http_connections: " << c.http_connections << "\n"
    << "http_idle_timeout_s: " << c.http_idle_timeout_s << "\n"
    << "refill_workers: " << c.refill_workers << "\n"
    << "deploy_timeout_ms: " << c.deploy_timeout_ms << "\n"
    << "mechanism: " << c.mechanism << "\n"
    << "invocations_per_vm: " << c.invocations_per_vm << "\n"
    << "idle_vm_ms: " << c.idle_vm_ms << "\n"
    << "defaults:\n"
    << "  memory_mib: " << c.defaults.memory_mib << "\n"
    << "  vcpus: " << c.defaults.vcpus << "\n"
    << "  timeout_ms: " << c.defaults.timeout_ms << "\n"
    << "  pool: " << c.defaults.pool << "\n"
    << "  max_concurrency: " << c.defaults.max_concurrency << "\n"
    << "limits:\n"
    << "  max_functions: " << c.limits.max_functions << "\n"
    << "  max_image_bytes: " << c.limits.max_image_bytes << "\n"
    << "  max_request_bytes: " << c.limits.max_request_bytes << "\n"
    << "  max_output_bytes: " << c.limits.max_output_bytes << "\n"
    << "  max_memory_mib: " << c.limits.max_memory_mib << "\n"
    << "  max_timeout_ms: " << c.limits.max_timeout_ms << "\n"
    << "  max_pool: " << c.limits.max_pool << "\n"
    << "  max_concurrency: " << c.limits.max_concurrency << "\n"
    << "  max_inflight: " << c.limits.max_inflight << "\n"
    << "  max_vms: " << c.limits.max_vms << "\n"
    << "  memory_budget_mib: " << c.limits.memory_budget_mib << "\n"
    << "  vm_host_overhead_kib: " << c.limits.vm_host_overhead_kib << "\n"
    << "  host_task_reserve: " << c.limits.host_task_reserve << "\n"
    << "  http_body_memory_mib: " << c.limits.http_body_memory_mib << "\n"
    << "jailer:\n"
    << "  enabled: " << (c.jailer.mode == JailerMode::kAuto ? "auto" : c.jailer.mode == JailerMode::kOn ? "true" : "false")
    << "\n"
    << "  binary: \"" << c.jailer.binary << "\"\n"
    << "  chroot_base: \"" << c.jailer.chroot_base << "\"\n"
    << "  uid: " << c.jailer.uid << "\n"
    << "  uid_count: " << c.jailer.uid_count << "\n"
    << "  gid: " << c.jailer.gid << "\n"
    << "  cgroup_version: " << c.jailer.cgroup_version << "\n"
    << "  memory_overhead_mib: " << c.jailer.memory_overhead_mib << "\n"
    << "  cpu_quota_pct: " << c.jailer.cpu_quota_pct << "\n"
    << "  pids_max: " << c.jailer.pids_max << "\n"
    << "  log_max_mib: " << c.jailer.log_max_mib << "\n"
    << "  no_file: " << c.jailer.no_file << "\n";
  return o.str();
}

}  // namespace ember::controller
