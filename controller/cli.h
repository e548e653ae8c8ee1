// The `ember` command line (a thin client of emberd's REST API): parsing is
// pure and unit-tested; ember_main.cc does the HTTP.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace ember::controller {

struct CliCommand {
  enum class Kind { kHelp, kDeploy, kInvoke, kList, kShow, kRemove, kVms, kKillVm } kind = Kind::kHelp;
  std::string url;         // --url, else $EMBER_URL, else http://127.0.0.1:8080
  bool json = false;       // --json: print the server's JSON as it is
  std::string name;        // function name (deploy, invoke, show, rm) or VM id (kill)
  std::string file;        // deploy: the static ELF or Ember image
  nlohmann::json options = nlohmann::json::object();  // deploy: X-Ember-Function
  bool with_stderr = false;  // invoke --stderr: print the program's stderr to ours
};

// argv without the program name. `env_url` is $EMBER_URL (may be empty).
Result<CliCommand> parse_ember_cli(const std::vector<std::string>& argv, const std::string& env_url);
std::string ember_usage();

// Exit status of `ember invoke` for an HTTP failure: 124 timeout (504), 125
// any other error; the program's own status otherwise.
int invoke_failure_exit(int http_status);

}  // namespace ember::controller
