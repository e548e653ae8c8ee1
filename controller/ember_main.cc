// ember: the command-line client of emberd (see `ember --help`).
#include <httplib.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "controller/cli.h"
#include "controller/fsutil.h"

namespace {

using ember::controller::CliCommand;
using nlohmann::json;

std::string human_bytes(uint64_t b) {
  char buf[32];
  if (b >= (1ull << 30)) std::snprintf(buf, sizeof buf, "%.1f GiB", static_cast<double>(b) / (1ull << 30));
  else if (b >= (1ull << 20)) std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(b) / (1ull << 20));
  else if (b >= 1024) std::snprintf(buf, sizeof buf, "%.1f KiB", static_cast<double>(b) / 1024);
  else std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(b));
  return buf;
}

std::string human_us(uint64_t us) {
  char buf[32];
  if (us >= 1000000) std::snprintf(buf, sizeof buf, "%.2f s", static_cast<double>(us) / 1e6);
  else if (us >= 1000) std::snprintf(buf, sizeof buf, "%.2f ms", static_cast<double>(us) / 1e3);
  else std::snprintf(buf, sizeof buf, "%llu µs", static_cast<unsigned long long>(us));
  return buf;
}

// The server's error text (JSON {"error": ...}) or the raw body.
std::string error_text(const httplib::Result& r) {
  json j = json::parse(r->body, nullptr, false);
  if (j.is_object() && j.contains("error") && j["error"].is_string()) return j["error"].get<std::string>();
  std::string b = r->body;
  while (!b.empty() && b.back() == '\n') b.pop_back();
  return b.empty() ? "HTTP " + std::to_string(r->status) : b;
}

// How a command's failure is told: a line on stderr for a person; with
// --json, an object on stdout for a script ({"error", "command", and the HTTP
// status when emberd answered), so that stdout is JSON whatever happened.
struct Failure {
  bool json = false;
  int operator()(const std::string& what, const std::string& why, int code = 1, int http_status = 0) const {
    if (json) {
      nlohmann::json j = {{"command", what}, {"error", why}};
      if (http_status) j["http_status"] = http_status;
      std::puts(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else {
      std::fprintf(stderr, "ember: %s: %s\n", what.c_str(), why.c_str());
    }
    return code;
  }
  // emberd's error answer: its status and its text.
  int answer(const std::string& what, const httplib::Result& r, int code = 1) const {
    return (*this)(what, json ? error_text(r) : std::to_string(r->status) + ": " + error_text(r), code, r->status);
  }
};

bool reachable(const httplib::Result& r, const CliCommand& c, const Failure& fail, const std::string& what, int* code) {
  if (r) return true;
  *code = fail(what, "cannot reach emberd at " + c.url + " (" + httplib::to_string(r.error()) + "); is it running? (--url, $EMBER_URL)");
  return false;
}

void print_functions(const json& arr) {
  std::printf("%-24s %4s %-9s %7s %9s %10s %9s %9s\n", "NAME", "VER", "MECHANISM", "MEMORY", "POOL", "INVOKES", "P50", "P99");
  for (const auto& f : arr) {
    const auto& pool = f["pool"];
    char poolbuf[32];
    std::snprintf(poolbuf, sizeof poolbuf, "%llu/%llu", pool["ready"].get<unsigned long long>(),
                  pool["target"].get<unsigned long long>());
    std::printf("%-24s %4llu %-9s %4u MiB %9s %10llu %9s %9s\n", f["name"].get<std::string>().c_str(),
                f["version"].get<unsigned long long>(), f["mechanism"].get<std::string>().c_str(),
                f["config"]["memory_mib"].get<unsigned>(), poolbuf, f["invocations"]["total"].get<unsigned long long>(),
                human_us(f["latency_us"]["p50"].get<uint64_t>()).c_str(),
                human_us(f["latency_us"]["p99"].get<uint64_t>()).c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace ember::controller;
  const char* env_url = std::getenv("EMBER_URL");
  auto parsed = parse_ember_cli(std::vector<std::string>(argv + 1, argv + argc), env_url ? env_url : "");
  if (!parsed) {
    std::fprintf(stderr, "ember: %s\n", parsed.message().c_str());
    return 2;
  }
  const CliCommand& c = *parsed;
  if (c.kind == CliCommand::Kind::kHelp) {
    std::fputs(ember_usage().c_str(), stdout);
    return 0;
  }
  httplib::Client http(c.url);
  http.set_connection_timeout(5, 0);
  http.set_read_timeout(3600, 0);
  http.set_write_timeout(600, 0);
  // A request goes out as headers then body: with Nagle the body waits for
  // the server's delayed ACK of the headers (40 ms per invocation).
  http.set_tcp_nodelay(true);
  int code = 0;
  const Failure fail{c.json};

  switch (c.kind) {
    case CliCommand::Kind::kHelp:
      return 0;
    case CliCommand::Kind::kDeploy: {
      const std::string what = "deploy " + c.name;
      auto body = read_file(c.file, 4ull << 30);
      if (!body) return fail(what, body.message());
      httplib::Headers h;
      if (!c.options.empty()) h.emplace("X-Ember-Function", c.options.dump());
      if (!c.json) std::fprintf(stderr, "ember: deploying %s from %s (%s)...\n", c.name.c_str(), c.file.c_str(), human_bytes(body->size()).c_str());
      auto r = http.Put("/v1/functions/" + c.name, h, *body, "application/octet-stream");
      if (!reachable(r, c, fail, what, &code)) return code;
      if (r->status != 201 && r->status != 200) return fail.answer(what, r);
      if (c.json) {
        std::fputs(r->body.c_str(), stdout);
        return 0;
      }
      json f = json::parse(r->body, nullptr, false);
      if (f.is_discarded()) return fail(what, "emberd answered something that is not JSON");
      std::string snap;
      if (f["mechanism"] == "snapshot")
        snap = ", template snapshot " + human_bytes(f["snapshot_bytes"].get<uint64_t>()) + " taken in " +
               human_us(f["template_us"].get<uint64_t>());
      std::printf("deployed %s version %llu: %s mechanism, image %s%s, pool %llu/%llu ready\n", c.name.c_str(),
                  f["version"].get<unsigned long long>(), f["mechanism"].get<std::string>().c_str(),
                  human_bytes(f["image_bytes"].get<uint64_t>()).c_str(), snap.c_str(),
                  f["pool"]["ready"].get<unsigned long long>(), f["pool"]["target"].get<unsigned long long>());
      return 0;
    }
    case CliCommand::Kind::kInvoke: {
      const std::string what = "invoke " + c.name;
      std::string input;
      if (!::isatty(0)) input.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
      auto r = http.Post("/v1/functions/" + c.name + "/invoke" + (c.with_stderr ? "?stderr=1" : ""), input,
                         "application/octet-stream");
      if (!reachable(r, c, fail, what, &code)) return code;
      if (r->status != 200) return fail.answer(what, r, invoke_failure_exit(r->status));
      const int exit_code = std::atoi(r->get_header_value("X-Ember-Exit-Code").c_str());
      if (c.json && !c.with_stderr) {
        json j = {{"exit_code", exit_code},
                  {"stdout", r->body},
                  {"vm", r->get_header_value("X-Ember-VM")},
                  {"duration_us", std::strtoull(r->get_header_value("X-Ember-Duration-Us").c_str(), nullptr, 10)}};
        std::puts(j.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
        return exit_code;
      }
      if (c.with_stderr) {
        if (c.json) {
          std::fputs(r->body.c_str(), stdout);
          return exit_code;
        }
        json j = json::parse(r->body, nullptr, false);
        if (j.is_discarded()) return fail(what, "emberd answered something that is not JSON", 125);
        const std::string out = j["stdout"].get<std::string>(), err = j["stderr"].get<std::string>();
        std::fwrite(out.data(), 1, out.size(), stdout);
        std::fwrite(err.data(), 1, err.size(), stderr);
        return exit_code;
      }
      std::fwrite(r->body.data(), 1, r->body.size(), stdout);
      return exit_code;
    }
    case CliCommand::Kind::kList: {
      auto r = http.Get("/v1/functions");
      if (!reachable(r, c, fail, "ls", &code)) return code;
      if (r->status != 200) return fail.answer("ls", r);
      if (c.json) {
        std::fputs(r->body.c_str(), stdout);
        return 0;
      }
      json arr = json::parse(r->body, nullptr, false);
      if (!arr.is_array()) return fail("ls", "emberd answered something that is not a JSON array");
      print_functions(arr);
      return 0;
    }
    case CliCommand::Kind::kShow: {
      auto r = http.Get("/v1/functions/" + c.name);
      if (!reachable(r, c, fail, "show " + c.name, &code)) return code;
      if (r->status != 200) return fail.answer("show " + c.name, r);
      std::fputs(r->body.c_str(), stdout);
      return 0;
    }
    case CliCommand::Kind::kRemove: {
      auto r = http.Delete("/v1/functions/" + c.name);
      if (!reachable(r, c, fail, "rm " + c.name, &code)) return code;
      if (r->status != 204 && r->status != 200) return fail.answer("rm " + c.name, r);
      if (c.json) std::puts(json{{"deleted", c.name}}.dump().c_str());
      else std::printf("deleted %s\n", c.name.c_str());
      return 0;
    }
    case CliCommand::Kind::kVms: {
      auto r = http.Get("/v1/vms");
      if (!reachable(r, c, fail, "vms", &code)) return code;
      if (r->status != 200) return fail.answer("vms", r);
      if (c.json) {
        std::fputs(r->body.c_str(), stdout);
        return 0;
      }
      json arr = json::parse(r->body, nullptr, false);
      if (!arr.is_array()) return fail("vms", "emberd answered something that is not a JSON array");
      std::printf("%-28s %-20s %4s %-9s %8s %10s %10s %9s\n", "ID", "FUNCTION", "VER", "STATE", "PID", "RSS", "PRIVATE", "AGE");
      for (const auto& v : arr)
        std::printf("%-28s %-20s %4llu %-9s %8d %10s %10s %9s\n", v["id"].get<std::string>().c_str(),
                    v["function"].get<std::string>().c_str(), v["version"].get<unsigned long long>(),
                    v["state"].get<std::string>().c_str(), v["pid"].get<int>(),
                    human_bytes(v["rss_bytes"].get<uint64_t>()).c_str(),
                    human_bytes(v["private_bytes"].get<uint64_t>()).c_str(),
                    human_us(v["age_ms"].get<uint64_t>() * 1000).c_str());
      return 0;
    }
    case CliCommand::Kind::kKillVm: {
      auto r = http.Delete("/v1/vms/" + c.name);
      if (!reachable(r, c, fail, "kill " + c.name, &code)) return code;
      if (r->status != 204 && r->status != 200) return fail.answer("kill " + c.name, r);
      if (c.json) std::puts(json{{"stopped", c.name}}.dump().c_str());
      else std::printf("stopped VM %s\n", c.name.c_str());
      return 0;
    }
  }
  return 0;
}
