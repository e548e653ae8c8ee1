// The example functions that `make demo` runs give the right answers.
#include <gtest/gtest.h>

#include "tests/integration/vm_fixture.h"

namespace ember::testing {
namespace {

class Examples : public VmTest {
 protected:
  static ProcessResult run_example(const std::string& name, const std::string& input) {
    return run_process({bin("ember-vmm"), "run", "--timeout-ms", "60000", "--image",
                        std::string(EMBER_BIN_DIR) + "/../examples/" + name + ".img"},
                       input);
  }
};

TEST_F(Examples, Echo) {
  auto r = run_example("echo", "hello from the host");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "hello from the host");
}

TEST_F(Examples, PrimesAfterHeavyStartup) {
  auto r = run_example("primes", "1000\n1000000\n33554431\n");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "primes <= 1000: 168\nprimes <= 1000000: 78498\nprimes <= 33554431: 2063689\n");
}

TEST_F(Examples, LuaScriptFromTheImage) {
  auto r = run_example("lua", "the quick brown fox jumps over the lazy dog the fox");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "11 words, 8 distinct\n  the          3\n  fox          2\n  brown        1\n");
}

}  // namespace
}  // namespace ember::testing
