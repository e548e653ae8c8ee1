#include "controller/cli.h"

#include <charconv>

namespace ember::controller {

std::string ember_usage() {
  return "usage: ember [--url URL] [--json] COMMAND ...\n"
         "\n"
         "  deploy NAME FILE [--memory-mib N] [--pool N] [--timeout-ms N] [--max-concurrency N]\n"
         "                   [--vcpus N] [--env K=V]... [--arg X]...\n"
         "                  deploy FILE (a static x86-64 ELF or an Ember image) as function NAME\n"
         "  invoke NAME [--stderr]\n"
         "                  run NAME with our stdin as its stdin; print its stdout (and with\n"
         "                  --stderr its stderr) and exit with its exit status (124: timed out,\n"
         "                  125: failed)\n"
         "  ls              list functions          show NAME   one function in detail\n"
         "  rm NAME         delete a function       vms         list the running VMs\n"
         "  kill VM_ID      stop one VM\n"
         "\n"
         "  --url URL       emberd's address (default $EMBER_URL, else http://127.0.0.1:8080)\n"
         "  --json          print the server's JSON answers as they are, and failures as\n"
         "                  {\"command\", \"error\", \"http_status\"} on stdout\n";
}

int invoke_failure_exit(int http_status) { return http_status == 504 ? 124 : 125; }

namespace {

Result<uint64_t> number(const std::string& flag, const std::string& v) {
  uint64_t x = 0;
  const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
  if (v.empty() || ec != std::errc() || p != v.data() + v.size()) return Error{flag + " " + v + ": expected a whole number"};
  return x;
}

}  // namespace

Result<CliCommand> parse_ember_cli(const std::vector<std::string>& argv, const std::string& env_url) {
  CliCommand c;
  c.url = env_url.empty() ? "http://127.0.0.1:8080" : env_url;
  std::vector<std::string> pos;
  std::vector<std::pair<std::string, std::string>> flags;  // command flags, in order
  for (size_t i = 0; i < argv.size(); i++) {
    const std::string& a = argv[i];
    auto value = [&](const std::string& flag) -> Result<std::string> {
      if (i + 1 >= argv.size()) return Error{flag + " needs a value"};
      return argv[++i];
    };
    if (a == "-h" || a == "--help" || a == "help") {
      c.kind = CliCommand::Kind::kHelp;
      return c;
    } else if (a == "--url") {
      EMBER_TRY(c.url, value(a));
    } else if (a.rfind("--url=", 0) == 0) {
      c.url = a.substr(6);
    } else if (a == "--json") {
      c.json = true;
    } else if (a == "--stderr") {
      flags.emplace_back(a, "");
    } else if (a == "--memory-mib" || a == "--pool" || a == "--timeout-ms" || a == "--max-concurrency" ||
               a == "--vcpus" || a == "--env" || a == "--arg") {
      EMBER_TRY(std::string v, value(a));
      flags.emplace_back(a, v);
    } else if (a.size() > 1 && a[0] == '-') {
      return Error{"unknown option '" + a + "'"};
    } else {
      pos.push_back(a);
    }
  }
  if (c.url.rfind("http://", 0) != 0) return Error{"--url " + c.url + ": expected http://HOST:PORT"};
  while (!c.url.empty() && c.url.back() == '/') c.url.pop_back();
  if (pos.empty()) return Error{"no command (see ember --help)"};
  const std::string cmd = pos[0];
  auto want = [&](size_t n, const char* usage) -> Result<void> {
    if (pos.size() != n + 1) return Error{"usage: ember " + std::string(usage)};
    return Ok();
  };
  auto no_flags = [&]() -> Result<void> {
    if (!flags.empty()) return Error{flags[0].first + " does not apply to '" + cmd + "'"};
    return Ok();
  };
  if (cmd == "deploy") {
    EMBER_TRY_VOID(want(2, "deploy NAME FILE [options]"));
    c.kind = CliCommand::Kind::kDeploy;
    c.name = pos[1];
    c.file = pos[2];
    nlohmann::json env = nlohmann::json::object();
    nlohmann::json args = nlohmann::json::array();
    for (const auto& [f, v] : flags) {
      if (f == "--env") {
        const auto eq = v.find('=');
        if (eq == std::string::npos || eq == 0) return Error{"--env " + v + ": expected KEY=VALUE"};
        env[v.substr(0, eq)] = v.substr(eq + 1);
      } else if (f == "--arg") {
        args.push_back(v);
      } else if (f == "--stderr") {
        return Error{"--stderr applies to invoke"};
      } else {
        EMBER_TRY(uint64_t n, number(f, v));
        std::string key = f.substr(2);
        for (auto& ch : key)
          if (ch == '-') ch = '_';
        c.options[key] = n;
      }
    }
    if (!env.empty()) c.options["env"] = env;
    if (!args.empty()) c.options["args"] = args;
  } else if (cmd == "invoke") {
    EMBER_TRY_VOID(want(1, "invoke NAME [--stderr] < input"));
    c.kind = CliCommand::Kind::kInvoke;
    c.name = pos[1];
    for (const auto& [f, v] : flags) {
      if (f != "--stderr") return Error{f + " does not apply to 'invoke'"};
      c.with_stderr = true;
    }
  } else if (cmd == "ls" || cmd == "list") {
    EMBER_TRY_VOID(want(0, "ls"));
    EMBER_TRY_VOID(no_flags());
    c.kind = CliCommand::Kind::kList;
  } else if (cmd == "show" || cmd == "info") {
    EMBER_TRY_VOID(want(1, "show NAME"));
    EMBER_TRY_VOID(no_flags());
    c.kind = CliCommand::Kind::kShow;
    c.name = pos[1];
  } else if (cmd == "rm" || cmd == "delete") {
    EMBER_TRY_VOID(want(1, "rm NAME"));
    EMBER_TRY_VOID(no_flags());
    c.kind = CliCommand::Kind::kRemove;
    c.name = pos[1];
  } else if (cmd == "vms") {
    EMBER_TRY_VOID(want(0, "vms"));
    EMBER_TRY_VOID(no_flags());
    c.kind = CliCommand::Kind::kVms;
  } else if (cmd == "kill") {
    EMBER_TRY_VOID(want(1, "kill VM_ID"));
    EMBER_TRY_VOID(no_flags());
    c.kind = CliCommand::Kind::kKillVm;
    c.name = pos[1];
  } else {
    return Error{"unknown command '" + cmd + "' (see ember --help)"};
  }
  return c;
}

}  // namespace ember::controller
