// A function's deploy-time settings (FunctionSpec), its persisted record
// (FunctionRecord: spec + version + what was built), name validation, and
// their JSON forms. Pure: no I/O, unit-tested.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.h"
#include "controller/config.h"

namespace ember::controller {

// [a-z0-9][a-z0-9-_]{0,62}: safe as a path component, a metric label and a
// URL segment.
bool valid_function_name(std::string_view name);
std::string function_name_rule();

struct FunctionSpec {
  uint32_t memory_mib = 128;
  uint32_t vcpus = 1;
  uint32_t timeout_ms = 10000;
  std::vector<std::string> env;   // "KEY=VALUE", applied over the image's own
  std::vector<std::string> args;  // argv[1..]; empty: the image's (or none for a bare ELF)
  uint32_t pool = 1;              // VMs kept parked at ready
  uint32_t max_concurrency = 64;  // invocations in progress at once; more get 429
};

FunctionSpec spec_defaults(const Config& cfg);

// Merges a JSON object (the X-Ember-Function header) into `spec`. Unknown keys,
// wrong types and values out of range are errors naming the key. `env` is an
// object {"K": "V"} or an array ["K=V"]; `args` an array of strings.
Result<void> merge_spec_json(FunctionSpec* spec, const nlohmann::json& j, const Config& cfg);

// One query parameter (memory_mib, vcpus, timeout_ms, pool, max_concurrency,
// env=K=V and args=X, both repeatable).
Result<void> merge_spec_param(FunctionSpec* spec, const std::string& key, const std::string& value, const Config& cfg);

// Range checks against the limits; every error names the field.
Result<void> validate_spec(const FunctionSpec& spec, const Config& cfg);

nlohmann::json spec_to_json(const FunctionSpec& spec);

// How the function's VMs are started (see controller/README.md).
enum class Mechanism {
  kSnapshot,  // template snapshot at ready; every VM restored from it (ember-vmm restore, vsock stdio)
  kBoot,      // every VM booted from the image and parked at ready (ember-vmm run, stdio over pipes)
};
const char* mechanism_name(Mechanism m);

struct FunctionRecord {
  std::string name;
  uint64_t version = 0;         // 1, 2, ... one per deploy
  FunctionSpec spec;
  Mechanism mechanism = Mechanism::kBoot;
  std::string source;           // "elf" or "image": what the deploy's body was
  std::string created_at;       // RFC 3339, UTC
  uint64_t image_bytes = 0;
  uint64_t snapshot_bytes = 0;  // on disk (sparse)
  uint64_t template_us = 0;     // boot to ready + snapshot, at deploy
};

nlohmann::json record_to_json(const FunctionRecord& r);
Result<FunctionRecord> record_from_json(const nlohmann::json& j, const Config& cfg);

// "2026-11-25T12:00:00Z"
std::string rfc3339_now();

}  // namespace ember::controller
