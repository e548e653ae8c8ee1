// ember-bench: Ember's benchmarks. Each prints a readable table and one JSON
// object with the figures and the machine they were taken on.
#include <cstdio>
#include <string>
#include <vector>

#include "bench/api_bench.h"
#include "bench/boot_bench.h"
#include "bench/emberd_bench.h"
#include "bench/snapshot_bench.h"
#include "bench/touch_bench.h"

int main(int argc, char** argv) {
  // Line-buffered even into a pipe: a run cut short (timeout, Ctrl-C) keeps
  // every table line it printed.
  setvbuf(stdout, nullptr, _IOLBF, 0);
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
    printf(
        "usage: ember-bench BENCHMARK [options]\n"
        "\n"
        "benchmarks:\n"
        "  boot      whole-process `ember-vmm run` vs fork+exec (and runsc)\n"
        "  touch     first touch of fresh memory in a VM vs natively (with and without huge pages)\n"
        "  api       VMM API: start to socket ready, request latency, idle memory\n"
        "  restore   snapshot restore-to-ready, new process and in-process; snapshot size\n"
        "  reset     reset in place to ready; echo invocation latency over vsock\n"
        "  invoke    emberd over HTTP: warm and cold invocations, throughput, density\n"
        "\n"
        "`ember-bench BENCHMARK --help` lists a benchmark's options.\n"
        "example: ember-bench boot -n 200 --json boot.json\n");
    return args.empty() ? 2 : 0;
  }
  const std::string name = args[0];
  args.erase(args.begin());
  if (name == "boot") return ember::bench::boot_bench(args);
  if (name == "touch") return ember::bench::touch_bench(args);
  if (name == "api") return ember::bench::api_bench(args);
  if (name == "restore") return ember::bench::restore_bench(args);
  if (name == "reset") return ember::bench::reset_bench(args);
  if (name == "invoke") return ember::bench::emberd_bench(args);
  fprintf(stderr, "ember-bench: unknown benchmark '%s' (see --help)\n", name.c_str());
  return 2;
}
