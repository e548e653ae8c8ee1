// API mode: `ember-vmm --api-sock PATH [--id ID]` serves the Firecracker-
// compatible REST API (vmm/api_handlers.h) on a Unix socket from the
// process's one event loop, which also runs the VM once it is started
// (SteppedMachine); `ember-vmm --config-file FILE [--no-api]` configures and
// starts the VM from a Firecracker-shaped JSON file.
//
// The program's stdin/stdout/stderr are ember-vmm's own, as with `run`. The
// process lives on after the guest ends (GET / says "Exited" and the
// status; other requests get a clear 400) until SIGINT/SIGTERM/SIGHUP/
// SIGQUIT; without an API it exits with the program's status, as `run`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"

namespace ember {

struct ApiCliOptions {
  std::string api_sock;     // empty: no API
  std::string id = "anonymous-instance";
  std::string config_file;  // empty: none
  std::string metrics_path; // --metrics-path: as PUT /metrics at start
  bool no_api = false;
  bool verbose = false;
  bool seccomp = true;
  unsigned api_timeout_s = 5;       // idle connections closed after this
  unsigned api_max_connections = 64;
  bool help = false;
};

// Whether argv (without the program name) asks for API mode: it does not
// start with a command and names --api-sock, --config-file or --no-api.
bool is_api_invocation(const std::vector<std::string>& argv);

// Pure; errors are usage errors (exit 2).
Result<ApiCliOptions> parse_api_cli(const std::vector<std::string>& argv);
std::string api_usage_text();

// Runs API mode; returns the process exit status. t0_ns: when main() began.
int api_main(const ApiCliOptions& options, uint64_t t0_ns);

}  // namespace ember
