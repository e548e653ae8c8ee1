// Child processes of emberd (VMMs, jailers): spawned with a clean fd table, a
// clean environment and their own session, each owned through a pidfd; one
// reaper thread waits for all of them with epoll, so a VMM that dies is
// noticed at once, whoever was talking to it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/fd.h"
#include "base/result.h"

namespace ember::controller {

struct ExitStatus {
  bool signaled = false;  // killed by a signal (value = the signal), else exited (value = status)
  int value = 0;
  int shell_code() const { return signaled ? 128 + value : value; }  // as sh reports it
  std::string describe() const;  // "exited with status 3", "killed by signal 9 (SIGKILL)"
};

struct SpawnOptions {
  std::vector<std::string> argv;   // argv[0] is the path executed
  std::vector<std::string> env;    // the whole environment ("K=V")
  int stdin_fd = -1;               // -1: /dev/null
  int stdout_fd = -1;
  int stderr_fd = -1;
};

struct Child {
  pid_t pid = -1;
  Fd pidfd;
};

// posix_spawn (vfork-like, cheap for a large parent) with fds 0-2 as given,
// every other fd closed, default signal dispositions, an empty signal mask,
// a new session; then pidfd_open. The child is never reaped by anyone but
// the caller (or a Reaper it hands the pidfd to).
Result<Child> spawn_process(const SpawnOptions& o);

// Sends `sig` through the pidfd (no pid-reuse race).
bool signal_process(int pidfd, int sig);

// Blocks until the child exits (waitid P_PIDFD); reaps it.
Result<ExitStatus> wait_process(int pidfd);
// The same with a deadline: an error once it passes (the child still runs).
Result<ExitStatus> wait_process_until(int pidfd, std::chrono::steady_clock::time_point deadline);

// A pidfd for `pid`, which must be a child of this process (one that
// ember-jailer --detach handed over): refused otherwise, so that a wrong pid
// can never make us signal or wait for a stranger.
Result<Child> adopt_child(pid_t pid);
// Kills and reaps `pid` if it is a child of this process (a VMM handed over
// that could not be adopted: it must not run unowned); otherwise nothing.
void discard_child(pid_t pid);
// Returns true and reaps it if it has exited, else false.
bool try_wait_process(int pidfd, ExitStatus* out);

// Sends SIGKILL to every other process whose command line carries
// `--id X` with match(X) (emberd's VMMs and jailers do) and returns their
// pidfds, to wait on (wait_process reaps those that are our children).
std::vector<Fd> kill_processes_with_id(const std::function<bool(const std::string&)>& match);

// Runs a command to completion with a deadline (kills it at the deadline);
// returns its status, its stdout and stderr as they interleaved, and its
// stderr alone (at most 64 KiB of each kept).
struct RunResult {
  ExitStatus status;
  bool timed_out = false;
  std::string output;
  std::string errors;
};
Result<RunResult> run_command(const std::vector<std::string>& argv, uint64_t timeout_ms,
                              const std::vector<std::string>& env = {});

class Reaper {
 public:
  using Callback = std::function<void(ExitStatus)>;
  Reaper();
  ~Reaper();  // stops the thread; callbacks of children still alive are dropped
  Reaper(const Reaper&) = delete;
  Reaper& operator=(const Reaper&) = delete;

  Result<void> start();
  // Calls `cb` on the reaper thread once the child behind `pidfd` has exited
  // and has been reaped. `pidfd` must stay open until then (the callback may
  // own it).
  Result<void> watch(int pidfd, Callback cb);
  size_t watched() const;

 private:
  void loop();
  Fd epoll_;
  Fd wake_;
  std::thread thread_;
  mutable std::mutex mu_;
  std::map<int, Callback> callbacks_;
  bool stop_ = false;
};

}  // namespace ember::controller
