// api/openapi-vmm.yaml describes exactly what ember-vmm serves: every
// documented path and method answers (not 404/405) and with a documented
// status; every other method on a documented path is 405; undocumented
// paths are 404; every $ref resolves. Needs no KVM: nothing is booted.
#include <gtest/gtest.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <set>
#include <string>

#include "tests/integration/api_client.h"
#include "tests/integration/openapi_check.h"
#include "tests/integration/vm_fixture.h"

namespace ember::testing {
namespace {

std::string spec_path() { return std::string(EMBER_SOURCE_DIR) + "/api/openapi-vmm.yaml"; }

class ApiOpenApi : public ::testing::Test {
 protected:
  void SetUp() override {
    sock_ = "/tmp/ember-openapi-" + std::to_string(::getpid()) + ".sock";
    vmm_ = std::make_unique<VmmProcess>(std::vector<std::string>{bin("ember-vmm"), "--api-sock", sock_});
    ASSERT_TRUE(vmm_->wait_socket(sock_)) << vmm_->stderr_text();
  }
  void TearDown() override {
    if (vmm_) {
      EXPECT_EQ(vmm_->stop(), 128 + SIGTERM) << vmm_->stderr_text();
    }
    ::unlink(sock_.c_str());
  }
  std::string sock_;
  std::unique_ptr<VmmProcess> vmm_;
};

TEST_F(ApiOpenApi, SpecParsesAndIsComplete) {
  YAML::Node spec = YAML::LoadFile(spec_path());
  ASSERT_TRUE(spec["openapi"]) << "not an OpenAPI document";
  ASSERT_TRUE(spec["paths"].IsMap());
  const std::set<std::string> documented = documented_paths(spec);
  for (const char* must : {"/", "/version", "/actions", "/boot-source", "/machine-config", "/vsock", "/vm",
                           "/vm/config", "/snapshot/create", "/snapshot/load", "/metrics", "/drives/{drive_id}",
                           "/network-interfaces/{iface_id}"})
    EXPECT_TRUE(documented.count(must)) << must << " is served but not documented";
  expect_refs_resolve(spec);
}

TEST_F(ApiOpenApi, EveryDocumentedPathAndMethodAnswers) {
  YAML::Node spec = YAML::LoadFile(spec_path());
  ApiClient api(sock_);
  const std::set<std::string> all_methods = {"GET", "PUT", "PATCH", "POST", "DELETE"};
  int checked = 0;
  for (auto p : spec["paths"]) {
    const std::string path = p.first.as<std::string>();
    const std::string url = concrete(path, "d1");
    std::set<std::string> methods;
    for (const auto& [method, documented_statuses] : operations(p.second)) {
      methods.insert(method);
      const ApiReply r = api.request(method, url, method == "GET" ? "" : "{}");
      ASSERT_NE(r.status, 0) << method << " " << url << ": " << r.error;
      EXPECT_NE(r.status, 404) << method << " " << url << " is documented but not served";
      EXPECT_NE(r.status, 405) << method << " " << url << " is documented but not served";
      EXPECT_TRUE(documented_statuses.count(r.status))
          << method << " " << url << " answered " << r.status << " (undocumented): " << r.body;
      if (r.status >= 400) {
        EXPECT_FALSE(r.fault().empty()) << method << " " << url << ": " << r.body;
      }
      checked++;
    }
    // Methods not documented for this path are refused with 405.
    for (const std::string& method : all_methods) {
      if (methods.count(method)) continue;
      const ApiReply r = api.request(method, url, method == "GET" ? "" : "{}");
      EXPECT_EQ(r.status, 405) << method << " " << url << " answers but is not documented: " << r.body;
    }
  }
  EXPECT_GE(checked, 16);
  // Undocumented paths are 404.
  for (const char* path : {"/balloon", "/logger", "/mmds", "/entropy", "/cpu-config", "/snapshot", "/vm/x"})
    EXPECT_EQ(api.get(path).status, 404) << path;
  EXPECT_TRUE(vmm_->alive());
}

}  // namespace
}  // namespace ember::testing
