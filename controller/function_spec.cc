#include "controller/function_spec.h"

#include <time.h>

#include <charconv>

namespace ember::controller {

using nlohmann::json;

bool valid_function_name(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  auto lower_digit = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!lower_digit(name[0])) return false;
  for (char c : name)
    if (!lower_digit(c) && c != '-' && c != '_') return false;
  return true;
}

std::string function_name_rule() {
  return "1 to 63 characters: lower-case letters, digits, '-' and '_', starting with a letter or digit";
}

FunctionSpec spec_defaults(const Config& cfg) {
  FunctionSpec s;
  s.memory_mib = cfg.defaults.memory_mib;
  s.vcpus = cfg.defaults.vcpus;
  s.timeout_ms = cfg.defaults.timeout_ms;
  s.pool = cfg.defaults.pool;
  s.max_concurrency = cfg.defaults.max_concurrency;
  return s;
}

namespace {

constexpr size_t kMaxEnv = 256;
constexpr size_t kMaxArgs = 256;
constexpr size_t kMaxStringBytes = 64 * 1024;  // env + args together

Result<uint32_t> parse_u32(const std::string& key, const std::string& s) {
  uint64_t v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size() || v > 0xffffffffu)
    return Error{key + ": '" + s + "' is not a whole number"};
  return static_cast<uint32_t>(v);
}

Result<void> check_env_entry(const std::string& kv) {
  const auto eq = kv.find('=');
  if (eq == std::string::npos || eq == 0) return Error{"env '" + kv + "': expected KEY=VALUE"};
  for (size_t i = 0; i < eq; i++) {
    const char c = kv[i];
    const bool ok = c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return Error{"env '" + kv.substr(0, eq) + "': a name is letters, digits and '_', not starting with a digit"};
  }
  if (kv.find('\0') != std::string::npos) return Error{"env " + kv.substr(0, eq) + ": NUL byte in the value"};
  return Ok();
}

// Sets KEY=VALUE, replacing an earlier entry for KEY.
void set_env(std::vector<std::string>* env, const std::string& kv) {
  const std::string key = kv.substr(0, kv.find('=') + 1);
  for (auto& e : *env)
    if (e.compare(0, key.size(), key) == 0) {
      e = kv;
      return;
    }
  env->push_back(kv);
}

// Only an unsigned JSON integer is read as one: nlohmann converts a float
// such as 5e30 with a plain cast, which is undefined behaviour.
Result<uint64_t> json_u64(const json& v, const std::string& key) {
  if (!v.is_number_unsigned()) {
    if (v.is_number_integer()) return Error{key + ": must not be negative"};
    return Error{key + ": expected a whole number, got " + std::string(v.type_name())};
  }
  return v.get<uint64_t>();
}

Result<uint32_t> json_u32(const json& v, const std::string& key) {
  EMBER_TRY(const uint64_t x, json_u64(v, key));
  if (x > 0xffffffffu) return Error{key + ": too large"};
  return static_cast<uint32_t>(x);
}

// An optional whole-number field of a stored record; absent reads as 0.
Result<uint64_t> optional_u64(const json& j, const std::string& key) {
  const auto it = j.find(key);
  if (it == j.end()) return uint64_t{0};
  return json_u64(*it, key);
}

}  // namespace

Result<void> merge_spec_json(FunctionSpec* spec, const json& j, const Config& cfg) {
  if (!j.is_object()) return Error{"function options: expected a JSON object"};
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const json& v = it.value();
    if (k == "memory_mib") {
      EMBER_TRY(spec->memory_mib, json_u32(v, k));
    } else if (k == "vcpus") {
      EMBER_TRY(spec->vcpus, json_u32(v, k));
    } else if (k == "timeout_ms") {
      EMBER_TRY(spec->timeout_ms, json_u32(v, k));
    } else if (k == "pool") {
      EMBER_TRY(spec->pool, json_u32(v, k));
    } else if (k == "max_concurrency") {
      EMBER_TRY(spec->max_concurrency, json_u32(v, k));
    } else if (k == "env") {
      if (v.is_object()) {
        for (auto e = v.begin(); e != v.end(); ++e) {
          if (!e.value().is_string()) return Error{"env." + e.key() + ": expected a string"};
          const std::string kv = e.key() + "=" + e.value().get<std::string>();
          EMBER_TRY_VOID(check_env_entry(kv));
          set_env(&spec->env, kv);
        }
      } else if (v.is_array()) {
        for (const auto& e : v) {
          if (!e.is_string()) return Error{"env: expected strings \"KEY=VALUE\""};
          EMBER_TRY_VOID(check_env_entry(e.get<std::string>()));
          set_env(&spec->env, e.get<std::string>());
        }
      } else {
        return Error{"env: expected an object {\"KEY\": \"VALUE\"} or an array [\"KEY=VALUE\"]"};
      }
    } else if (k == "args") {
      if (!v.is_array()) return Error{"args: expected an array of strings"};
      spec->args.clear();
      for (const auto& a : v) {
        if (!a.is_string()) return Error{"args: expected an array of strings"};
        if (a.get<std::string>().find('\0') != std::string::npos) return Error{"args: NUL byte in an argument"};
        spec->args.push_back(a.get<std::string>());
      }
    } else {
      return Error{"unknown function option '" + k +
                   "' (known: memory_mib, vcpus, timeout_ms, env, args, pool, max_concurrency)"};
    }
  }
  return validate_spec(*spec, cfg);
}

Result<void> merge_spec_param(FunctionSpec* spec, const std::string& key, const std::string& value, const Config& cfg) {
  if (key == "memory_mib") {
    EMBER_TRY(spec->memory_mib, parse_u32(key, value));
  } else if (key == "vcpus") {
    EMBER_TRY(spec->vcpus, parse_u32(key, value));
  } else if (key == "timeout_ms") {
    EMBER_TRY(spec->timeout_ms, parse_u32(key, value));
  } else if (key == "pool") {
    EMBER_TRY(spec->pool, parse_u32(key, value));
  } else if (key == "max_concurrency") {
    EMBER_TRY(spec->max_concurrency, parse_u32(key, value));
  } else if (key == "env") {
    EMBER_TRY_VOID(check_env_entry(value));
    set_env(&spec->env, value);
  } else if (key == "args" || key == "arg") {
    if (value.find('\0') != std::string::npos) return Error{"args: NUL byte in an argument"};
    spec->args.push_back(value);
  } else {
    return Error{"unknown query parameter '" + key +
                 "' (known: memory_mib, vcpus, timeout_ms, env, args, pool, max_concurrency)"};
  }
  return validate_spec(*spec, cfg);
}

Result<void> validate_spec(const FunctionSpec& s, const Config& cfg) {
  const auto& l = cfg.limits;
  if (s.memory_mib < 16 || s.memory_mib > l.max_memory_mib || s.memory_mib % 2 != 0)
    return Error{"memory_mib " + std::to_string(s.memory_mib) + ": must be an even number from 16 to " +
                 std::to_string(l.max_memory_mib)};
  if (s.vcpus != 1) return Error{"vcpus " + std::to_string(s.vcpus) + ": ember-vmm runs 1 vCPU per VM"};
  if (s.timeout_ms < 1 || s.timeout_ms > l.max_timeout_ms)
    return Error{"timeout_ms " + std::to_string(s.timeout_ms) + ": must be from 1 to " + std::to_string(l.max_timeout_ms)};
  if (s.pool > l.max_pool)
    return Error{"pool " + std::to_string(s.pool) + ": at most " + std::to_string(l.max_pool) + " (limits.max_pool)"};
  if (s.max_concurrency < 1 || s.max_concurrency > l.max_concurrency)
    return Error{"max_concurrency " + std::to_string(s.max_concurrency) + ": must be from 1 to " +
                 std::to_string(l.max_concurrency)};
  if (s.env.size() > kMaxEnv) return Error{"env: more than " + std::to_string(kMaxEnv) + " variables"};
  if (s.args.size() > kMaxArgs) return Error{"args: more than " + std::to_string(kMaxArgs) + " arguments"};
  size_t bytes = 0;
  for (const auto& e : s.env) bytes += e.size() + 1;
  for (const auto& a : s.args) bytes += a.size() + 1;
  if (bytes > kMaxStringBytes) return Error{"env and args: more than 64 KiB in all"};
  return Ok();
}

json spec_to_json(const FunctionSpec& s) {
  json env = json::object();
  for (const auto& e : s.env) {
    const auto eq = e.find('=');
    env[e.substr(0, eq)] = e.substr(eq + 1);
  }
  return json{{"memory_mib", s.memory_mib}, {"vcpus", s.vcpus},   {"timeout_ms", s.timeout_ms},
              {"env", env},                 {"args", s.args},     {"pool", s.pool},
              {"max_concurrency", s.max_concurrency}};
}

const char* mechanism_name(Mechanism m) { return m == Mechanism::kSnapshot ? "snapshot" : "boot"; }

json record_to_json(const FunctionRecord& r) {
  return json{{"name", r.name},
              {"version", r.version},
              {"config", spec_to_json(r.spec)},
              {"mechanism", mechanism_name(r.mechanism)},
              {"source", r.source},
              {"created_at", r.created_at},
              {"image_bytes", r.image_bytes},
              {"snapshot_bytes", r.snapshot_bytes},
              {"template_us", r.template_us}};
}

Result<FunctionRecord> record_from_json(const json& j, const Config& cfg) {
  try {
    FunctionRecord r;
    r.name = j.at("name").get<std::string>();
    if (!valid_function_name(r.name)) return Error{"bad function name '" + r.name + "'"};
    EMBER_TRY(r.version, json_u64(j.at("version"), "version"));
    r.spec = spec_defaults(cfg);
    r.spec.env.clear();
    r.spec.args.clear();
    // Limits may have shrunk since the deploy: a record is taken as it was
    // stored, then checked; a record the new limits refuse is an error.
    EMBER_TRY_VOID(merge_spec_json(&r.spec, j.at("config"), cfg));
    const std::string m = j.at("mechanism").get<std::string>();
    if (m == "snapshot") r.mechanism = Mechanism::kSnapshot;
    else if (m == "boot") r.mechanism = Mechanism::kBoot;
    else return Error{"unknown mechanism '" + m + "'"};
    r.source = j.value("source", "image");
    r.created_at = j.value("created_at", "");
    EMBER_TRY(r.image_bytes, optional_u64(j, "image_bytes"));
    EMBER_TRY(r.snapshot_bytes, optional_u64(j, "snapshot_bytes"));
    EMBER_TRY(r.template_us, optional_u64(j, "template_us"));
    return r;
  } catch (const json::exception& e) {
    return Error{std::string("malformed function record: ") + e.what()};
  }
}

std::string rfc3339_now() {
  struct timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  ::gmtime_r(&ts.tv_sec, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace ember::controller
