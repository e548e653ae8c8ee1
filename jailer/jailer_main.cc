// ember-jailer: runs one ember-vmm confined (see `ember-jailer --help`).
#include <time.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "base/clock.h"
#include "jailer/jail.h"
#include "jailer/jailer_cli.h"

int main(int argc, char** argv) {
  using namespace ember::jail;
  const uint64_t t0 = ember::monotonic_ns();
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::fputs(jailer_usage_text().c_str(), stderr);
    return kExitUsage;
  }
  auto o = parse_jailer_cli(args);
  if (!o) {
    std::fprintf(stderr, "ember-jailer: %s\n", o.message().c_str());
    return kExitUsage;
  }
  switch (o->mode) {
    case JailerOptions::Mode::kHelp:
      std::fputs(jailer_usage_text().c_str(), stdout);
      return 0;
    case JailerOptions::Mode::kCleanup:
      return run_cleanup(*o);
    case JailerOptions::Mode::kJail:
      break;
  }
  return run_jail(*o, t0);
}
