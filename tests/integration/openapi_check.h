// Shared by the OpenAPI tests (api/openapi-vmm.yaml, api/openapi-emberd.yaml):
// the checks that need only the document.
#pragma once

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <cctype>
#include <cstring>
#include <functional>
#include <map>
#include <set>
#include <string>

namespace ember::testing {

// Every "$ref" in `spec` points at something under #/components/.
inline void expect_refs_resolve(const YAML::Node& spec) {
  std::function<void(const YAML::Node&)> walk = [&](const YAML::Node& n) {
    if (n.IsMap()) {
      for (auto kv : n) {
        if (kv.first.as<std::string>() == "$ref") {
          std::string ref = kv.second.as<std::string>();
          ASSERT_EQ(ref.rfind("#/components/", 0), 0u) << ref;
          // Node::reset, not operator=: assigning a yaml-cpp Node writes
          // through to the node it refers to.
          YAML::Node target;
          target.reset(spec["components"]);
          std::string rest = ref.substr(std::strlen("#/components/"));
          for (size_t pos; (pos = rest.find('/')) != std::string::npos; rest = rest.substr(pos + 1)) {
            YAML::Node next = target[rest.substr(0, pos)];
            target.reset(next);
          }
          EXPECT_TRUE(target[rest]) << "dangling " << ref;
        } else {
          walk(kv.second);
        }
      }
    } else if (n.IsSequence()) {
      for (auto e : n) walk(e);
    }
  };
  walk(spec);
}

inline std::set<std::string> documented_paths(const YAML::Node& spec) {
  std::set<std::string> out;
  for (auto p : spec["paths"]) out.insert(p.first.as<std::string>());
  return out;
}

inline std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// "/drives/{drive_id}" -> "/drives/" + value
inline std::string concrete(const std::string& path, const std::string& value) {
  std::string out;
  for (size_t i = 0; i < path.size(); i++) {
    if (path[i] == '{') {
      i = path.find('}', i);
      out += value;
    } else {
      out += path[i];
    }
  }
  return out;
}

// The operations of one path item: "GET" -> its responses' status codes.
inline std::map<std::string, std::set<long>> operations(const YAML::Node& path_item) {
  std::map<std::string, std::set<long>> out;
  for (auto m : path_item) {
    const std::string name = m.first.as<std::string>();
    if (name == "parameters" || name == "summary" || name == "description") continue;
    std::set<long>& statuses = out[upper(name)];
    for (auto r : m.second["responses"]) statuses.insert(std::stol(r.first.as<std::string>()));
  }
  return out;
}

}  // namespace ember::testing
