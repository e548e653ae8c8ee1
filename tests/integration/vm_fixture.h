// Shared set-up for integration tests that boot real microVMs: paths to the
// built binaries and guest programs, and a skip when /dev/kvm is missing.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/integration/subprocess.h"

namespace ember::testing {

inline std::string bin(const std::string& name) { return std::string(EMBER_BIN_DIR) + "/" + name; }
inline std::string guest_program(const std::string& name) { return std::string(EMBER_GUEST_PROGRAMS_DIR) + "/" + name; }

// The libc flavours every guest test program is built in (tests/guest/CMakeLists.txt).
inline const std::vector<std::string>& libc_variants() {
  static const std::vector<std::string> v = {"musl", "glibc", "glibc-pie", "glibc-dynamic"};
  return v;
}

class VmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!kvm_available(&why)) GTEST_SKIP() << why;
  }
  // ember-vmm run [vmm_flags...] PROGRAM [-- args...]
  static ProcessResult run_vm(const std::string& program, const std::vector<std::string>& args = {},
                              const std::string& input = {}, const std::vector<std::string>& vmm_flags = {}) {
    std::vector<std::string> argv = {bin("ember-vmm"), "run", "--timeout-ms", "30000"};
    argv.insert(argv.end(), vmm_flags.begin(), vmm_flags.end());
    argv.push_back(program);
    if (!args.empty()) {
      argv.push_back("--");
      argv.insert(argv.end(), args.begin(), args.end());
    }
    return run_process(argv, input);
  }
};

}  // namespace ember::testing
