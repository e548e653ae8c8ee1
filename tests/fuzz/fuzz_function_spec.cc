// libFuzzer target for emberd's function settings (controller/function_spec.cc):
// the X-Ember-Function header and query parameters of PUT /v1/functions/NAME
// come from any API client, and function records are read back from the
// state directory at start-up. Whatever the bytes, each parser accepts or
// refuses with a message, and what it accepts passes the same range checks
// as a deploy and survives its own JSON form unchanged.
//
// Input: byte 0 picks the parser; the rest is its text.
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <string>

#include <nlohmann/json.hpp>

#include "controller/function_spec.h"

namespace c = ember::controller;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const c::Config cfg;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  c::FunctionSpec spec = c::spec_defaults(cfg);
  switch (data[0] % 3) {
    case 0: {  // the header's JSON
      const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded()) return 0;
      auto r = c::merge_spec_json(&spec, j, cfg);
      if (!r) {
        if (r.message().empty()) abort();
        return 0;
      }
      break;
    }
    case 1: {  // one query parameter, "key=value"
      const size_t eq = text.find('=');
      auto r = c::merge_spec_param(&spec, text.substr(0, eq), eq == std::string::npos ? "" : text.substr(eq + 1), cfg);
      if (!r) {
        if (r.message().empty()) abort();
        return 0;
      }
      break;
    }
    default: {  // a stored record
      const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded()) return 0;
      auto r = c::record_from_json(j, cfg);
      if (!r) {
        if (r.message().empty()) abort();
        return 0;
      }
      auto again = c::record_from_json(c::record_to_json(*r), cfg);
      if (!again || c::record_to_json(*again) != c::record_to_json(*r)) abort();
      return 0;
    }
  }
  if (auto v = c::validate_spec(spec, cfg); !v) {
    if (v.message().empty()) abort();
    return 0;
  }
  // What passed the checks reads back from its own JSON form as it was.
  c::FunctionSpec again = c::spec_defaults(cfg);
  if (!c::merge_spec_json(&again, c::spec_to_json(spec), cfg)) abort();
  if (c::spec_to_json(again) != c::spec_to_json(spec)) abort();
  return 0;
}
