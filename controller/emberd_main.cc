// emberd: the Ember function platform daemon (see controller/README.md).
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "controller/config.h"
#include "controller/controller.h"
#include "controller/fsutil.h"
#include "controller/http_api.h"
#include "controller/log.h"

namespace {

const char kUsage[] =
    "usage: emberd [--config FILE] [--listen HOST:PORT] [--state-dir DIR] [--log-level LEVEL]\n"
    "              [--stop-with-parent] [--print-config]\n"
    "\n"
    "Serves the Ember REST API (api/openapi-emberd.yaml): deploy functions, invoke them in\n"
    "microVMs restored from template snapshots, pools, metrics. Every setting has a default\n"
    "(controller/README.md); --listen, --state-dir and --log-level override the config file.\n"
    "\n"
    "  --config FILE       YAML configuration (unknown keys and bad values are errors)\n"
    "  --listen HOST:PORT  where to serve HTTP (default 127.0.0.1:8080; port 0: any free port,\n"
    "                      written to STATE_DIR/emberd.addr)\n"
    "  --state-dir DIR     functions, snapshots and VM sockets (default /var/lib/ember as root)\n"
    "  --log-level LEVEL   debug, info, warn or error\n"
    "  --stop-with-parent  stop (as on SIGTERM: every VM with it) when the process that\n"
    "                      started emberd dies, however it dies (benchmarks, test harnesses)\n"
    "  --print-config      print the effective configuration as YAML and exit\n";

int usage_error(const std::string& msg) {
  std::fprintf(stderr, "emberd: %s\n%s", msg.c_str(), kUsage);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace ember::controller;
  std::vector<std::string> args(argv + 1, argv + argc);
  std::string config_path, listen, state_dir, level;
  bool print_config = false, stop_with_parent = false;
  for (size_t i = 0; i < args.size(); i++) {
    const std::string& a = args[i];
    auto value = [&](std::string* out) -> bool {
      if (i + 1 >= args.size()) return false;
      *out = args[++i];
      return true;
    };
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--config") {
      if (!value(&config_path)) return usage_error("--config needs a file");
    } else if (a == "--listen") {
      if (!value(&listen)) return usage_error("--listen needs HOST:PORT");
    } else if (a == "--state-dir") {
      if (!value(&state_dir)) return usage_error("--state-dir needs a directory");
    } else if (a == "--log-level") {
      if (!value(&level)) return usage_error("--log-level needs a level");
    } else if (a == "--print-config") {
      print_config = true;
    } else if (a == "--stop-with-parent") {
      stop_with_parent = true;
    } else {
      return usage_error("unknown argument '" + a + "'");
    }
  }
  auto loaded = config_path.empty() ? ember::Result<Config>(default_config()) : load_config_file(config_path);
  if (!loaded) {
    std::fprintf(stderr, "emberd: %s\n", loaded.message().c_str());
    return 2;
  }
  Config cfg = *loaded;
  if (!listen.empty()) cfg.listen = listen;
  if (!state_dir.empty()) {
    if (state_dir[0] != '/') {
      char cwd[4096];
      if (::getcwd(cwd, sizeof cwd)) state_dir = std::string(cwd) + "/" + state_dir;
    }
    cfg.state_dir = state_dir;
  }
  if (!level.empty()) {
    auto l = parse_log_level(level);
    if (!l) return usage_error(l.message());
    cfg.log_level = *l;
  }
  if (auto v = validate_config(cfg); !v) {
    std::fprintf(stderr, "emberd: %s\n", v.message().c_str());
    return 2;
  }
  if (print_config) {
    std::fputs(config_to_yaml(cfg).c_str(), stdout);
    return 0;
  }

  // Signals: SIGPIPE never kills us (clients and VMs go away); SIGINT/SIGTERM
  // are taken by one thread with sigwait, blocked everywhere else (set before
  // any thread starts; children get a clean mask from spawn_process).
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  if (stop_with_parent) {
    // SIGTERM, taken by the signal thread below like any other. A parent
    // already gone (we were adopted) would never send it: refuse to start.
    const pid_t parent = ::getppid();
    if (::prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0) != 0 || ::getppid() != parent) {
      std::fprintf(stderr, "emberd: --stop-with-parent: the parent is gone or PR_SET_PDEATHSIG failed\n");
      return 1;
    }
  }

  Logger log(cfg.log_level);
  Controller controller(cfg, log);
  if (auto s = controller.start(); !s) {
    log.error("%s", s.message().c_str());
    return 1;
  }
  HttpApi api(controller, log);
  auto port = api.bind();
  if (!port) {
    log.error("%s", port.message().c_str());
    controller.shutdown();
    return 1;
  }
  std::string host;
  int unused;
  (void)split_listen(cfg.listen, &host, &unused);
  const std::string url = "http://" + (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(*port);
  if (auto w = write_file_atomic(cfg.state_dir + "/emberd.addr", url + "\n"); !w) log.warn("%s", w.message().c_str());
  log.info("listening on %s (state %s)", url.c_str(), cfg.state_dir.c_str());

  std::thread signals([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    log.info("%s: stopping", strsignal(sig));
    api.stop();
  });
  api.run();
  // run() returns after stop() (or a listen failure): wake the signal thread if needed.
  ::kill(::getpid(), SIGTERM);
  signals.join();
  controller.shutdown();
  ::unlink((cfg.state_dir + "/emberd.addr").c_str());
  log.info("stopped");
  return 0;
}
