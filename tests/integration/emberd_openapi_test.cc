// api/openapi-emberd.yaml describes exactly what emberd serves: every
// documented path and method answers with a status documented for it and a
// JSON error body where it fails; other methods on documented paths are 405;
// undocumented paths are 404; every $ref resolves. Needs no KVM: nothing is
// deployed (the requests name functions and VMs that do not exist, or send
// bodies that are refused before any VM starts).
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <yaml-cpp/yaml.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "controller/testdata/emberd_fixture.h"
#include "tests/integration/openapi_check.h"

namespace ember::testing {
namespace {

std::string spec_path() { return std::string(EMBER_SOURCE_DIR) + "/api/openapi-emberd.yaml"; }

class EmberdOpenApi : public ::testing::Test {
 protected:
  void SetUp() override {
    ::signal(SIGPIPE, SIG_IGN);
    char tmpl[] = "/tmp/emberd-openapi-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    // Unjailed: these requests never start a VM, and need no root.
    d_.start(dir_, "jailer:\n  enabled: false\n");
  }
  void TearDown() override {
    d_.stop();
    controller::remove_tree(dir_);
    ::unlink((dir_ + ".log").c_str());
    ::unlink((dir_ + ".yaml").c_str());
  }
  httplib::Result request(const std::string& method, const std::string& url) {
    auto& c = d_.http();
    // A body that is no program: refused (400) before anything boots.
    const std::string body = "not a program";
    if (method == "GET") return c.Get(url);
    if (method == "PUT") return c.Put(url, body, "application/octet-stream");
    if (method == "POST") return c.Post(url, body, "application/octet-stream");
    if (method == "PATCH") return c.Patch(url, body, "application/octet-stream");
    return c.Delete(url);
  }
  std::string dir_;
  Emberd d_;
};

TEST_F(EmberdOpenApi, SpecParsesAndIsComplete) {
  YAML::Node spec = YAML::LoadFile(spec_path());
  ASSERT_TRUE(spec["openapi"]) << "not an OpenAPI document";
  const std::set<std::string> documented = documented_paths(spec);
  for (const char* must : {"/healthz", "/metrics", "/v1/functions", "/v1/functions/{name}",
                           "/v1/functions/{name}/invoke", "/v1/vms", "/v1/vms/{id}"})
    EXPECT_TRUE(documented.count(must)) << must << " is served but not documented";
  expect_refs_resolve(spec);
}

TEST_F(EmberdOpenApi, EveryDocumentedPathAndMethodAnswers) {
  YAML::Node spec = YAML::LoadFile(spec_path());
  const std::set<std::string> all_methods = {"GET", "PUT", "PATCH", "POST", "DELETE"};
  int checked = 0;
  for (auto p : spec["paths"]) {
    const std::string url = concrete(p.first.as<std::string>(), "nope");
    const auto ops = operations(p.second);
    for (const auto& [method, documented_statuses] : ops) {
      auto r = request(method, url);
      ASSERT_TRUE(r) << method << " " << url << ": no answer";
      EXPECT_NE(r->status, 405) << method << " " << url << " is documented but not served";
      EXPECT_TRUE(documented_statuses.count(r->status))
          << method << " " << url << " answered " << r->status << " (undocumented): " << r->body;
      if (r->status >= 400) {
        auto j = nlohmann::json::parse(r->body, nullptr, false);
        EXPECT_TRUE(j.is_object() && j.contains("error") && !j["error"].get<std::string>().empty())
            << method << " " << url << ": " << r->body;
      }
      checked++;
    }
    for (const std::string& method : all_methods) {
      if (ops.count(method)) continue;
      auto r = request(method, url);
      ASSERT_TRUE(r);
      EXPECT_EQ(r->status, 405) << method << " " << url << " answers but is not documented: " << r->body;
    }
  }
  EXPECT_GE(checked, 9);
  for (const char* path : {"/", "/v1", "/v2/functions", "/v1/sandboxes", "/healthz/x"}) {
    auto r = d_.http().Get(path);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 404) << path << ": " << r->body;
  }
  auto alive = d_.http().Get("/healthz");
  ASSERT_TRUE(alive);
  EXPECT_EQ(alive->status, 200);
}

}  // namespace
}  // namespace ember::testing
