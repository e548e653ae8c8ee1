#include "bench/run_once.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>

extern char** environ;

namespace ember::bench {

std::optional<RunOutcome> run_once(const std::vector<std::string>& argv, bool capture_stderr) {
  int err_pipe[2] = {-1, -1};
  if (capture_stderr && pipe2(err_pipe, O_CLOEXEC) != 0) return std::nullopt;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  if (capture_stderr) posix_spawn_file_actions_adddup2(&fa, err_pipe[1], 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  const auto t0 = std::chrono::steady_clock::now();
  int rc = posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (capture_stderr) close(err_pipe[1]);
  if (rc != 0) {
    if (capture_stderr) close(err_pipe[0]);
    fprintf(stderr, "ember-bench: spawn %s: %s\n", argv[0].c_str(), strerror(rc));
    return std::nullopt;
  }
  RunOutcome out;
  if (capture_stderr) {
    char buf[4096];
    ssize_t n;
    while ((n = read(err_pipe[0], buf, sizeof buf)) > 0) out.trace.append(buf, static_cast<size_t>(n));
    close(err_pipe[0]);
  }
  int ws = 0;
  rusage ru{};
  wait4(pid, &ws, 0, &ru);
  out.wall_us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
  out.status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
  out.minor_faults = static_cast<uint64_t>(ru.ru_minflt);
  return out;
}

}  // namespace ember::bench
