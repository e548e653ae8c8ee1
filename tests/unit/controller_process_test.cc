// Child processes: spawn with a clean fd table and environment, pidfd
// signalling, the reaper, and run_command's deadline.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>

#include "controller/process.h"

namespace ember::controller {
namespace {

TEST(ControllerProcess, RunCommand) {
  auto r = run_command({"/bin/sh", "-c", "echo out; echo err >&2; exit 3"}, 10000);
  ASSERT_TRUE(r) << r.message();
  EXPECT_FALSE(r->status.signaled);
  EXPECT_EQ(r->status.value, 3);
  EXPECT_NE(r->output.find("out"), std::string::npos);
  EXPECT_NE(r->output.find("err"), std::string::npos);
  EXPECT_EQ(r->errors, "err\n");  // stderr alone
  EXPECT_EQ(r->status.describe(), "exited with status 3");
}

// A child that waits for a signal (only async-signal-safe calls after fork).
pid_t fork_waiting_child() {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::pause();
    ::_exit(0);
  }
  return pid;
}

// What emberd does with a VMM that ember-jailer --detach hands over: a
// child is adopted; a process that is not our child is refused.
TEST(ControllerProcess, AdoptsOnlyItsOwnChildren) {
  const pid_t pid = fork_waiting_child();
  ASSERT_GE(pid, 0);
  auto c = adopt_child(pid);
  ASSERT_TRUE(c) << c.message();
  EXPECT_EQ(c->pid, pid);
  auto early = wait_process_until(c->pidfd.get(), std::chrono::steady_clock::now() + std::chrono::milliseconds(50));
  EXPECT_FALSE(early) << "the child still runs";
  ASSERT_TRUE(signal_process(c->pidfd.get(), SIGTERM));
  auto st = wait_process_until(c->pidfd.get(), std::chrono::steady_clock::now() + std::chrono::seconds(10));
  ASSERT_TRUE(st) << st.message();
  EXPECT_TRUE(st->signaled);
  EXPECT_EQ(st->value, SIGTERM);

  auto stranger = adopt_child(::getppid());
  ASSERT_FALSE(stranger);
  EXPECT_NE(stranger.message().find("not a child of emberd"), std::string::npos) << stranger.message();
  discard_child(::getppid());  // not ours: left alone
  EXPECT_EQ(::kill(::getppid(), 0), 0);
}

TEST(ControllerProcess, DiscardKillsAndReapsAChild) {
  const pid_t pid = fork_waiting_child();
  ASSERT_GE(pid, 0);
  discard_child(pid);
  EXPECT_EQ(::waitpid(pid, nullptr, WNOHANG), -1) << "already reaped";
  EXPECT_EQ(errno, ECHILD);
}

// How emberd finds a VMM by its --id (orphans of a previous run, a VMM whose
// jailer died before naming it): only the matching process is killed, and
// the pidfd that comes back reaps it.
TEST(ControllerProcess, KillsProcessesByTheirId) {
  auto spawn_with_id = [](const std::string& id) {
    SpawnOptions o;
    o.argv = {"/bin/sh", "-c", "kill -STOP $$", "sh", "--id", id};  // waits, with no child of its own
    return spawn_process(o);
  };
  const std::string id = "ember-unit-" + std::to_string(::getpid());
  auto target = spawn_with_id(id + "-a");
  auto bystander = spawn_with_id(id + "-ab");
  ASSERT_TRUE(target) << target.message();
  ASSERT_TRUE(bystander) << bystander.message();
  auto killed = kill_processes_with_id([&](const std::string& x) { return x == id + "-a"; });
  ASSERT_EQ(killed.size(), 1u);
  auto st = wait_process(killed[0].get());
  ASSERT_TRUE(st) << st.message();
  EXPECT_TRUE(st->signaled);
  EXPECT_EQ(st->value, SIGKILL);
  EXPECT_FALSE(wait_process_until(bystander->pidfd.get(), std::chrono::steady_clock::now() + std::chrono::milliseconds(50)))
      << "the bystander still runs";
  ASSERT_TRUE(signal_process(bystander->pidfd.get(), SIGKILL));
  EXPECT_TRUE(wait_process(bystander->pidfd.get()));
  EXPECT_TRUE(kill_processes_with_id([&](const std::string& x) { return x.rfind(id, 0) == 0; }).empty());
}

TEST(ControllerProcess, RunCommandDeadline) {
  auto r = run_command({"/bin/sleep", "30"}, 200);
  ASSERT_TRUE(r) << r.message();
  EXPECT_TRUE(r->timed_out);
  EXPECT_TRUE(r->status.signaled);
  EXPECT_EQ(r->status.value, SIGKILL);
  EXPECT_EQ(r->status.shell_code(), 137);
  EXPECT_NE(r->status.describe().find("SIGKILL"), std::string::npos);
}

TEST(ControllerProcess, CleanFdsAndEnvironment) {
  const int leak = ::open("/dev/null", O_RDONLY);  // not CLOEXEC: must still not reach the child
  ASSERT_GE(leak, 0);
  auto r = run_command({"/bin/sh", "-c", "ls /proc/self/fd | wc -l"}, 10000, {"PATH=/usr/bin:/bin"});
  ::close(leak);
  ASSERT_TRUE(r) << r.message();
  // fds: 0, 1, 2 and the one `ls` opens for /proc/self/fd.
  EXPECT_EQ(r->output.substr(0, 2), "4\n") << r->output;
  auto e = run_command({"/usr/bin/env"}, 10000, {"ONLY=1"});
  ASSERT_TRUE(e);
  EXPECT_EQ(e->output, "ONLY=1\n");
}

TEST(ControllerProcess, SpawnFailureIsAnError) {
  SpawnOptions o;
  o.argv = {"/nonexistent/ember-vmm"};
  auto c = spawn_process(o);
  EXPECT_FALSE(c);
}

TEST(ControllerProcess, ReaperSeesEveryExit) {
  Reaper reaper;
  ASSERT_TRUE(reaper.start());
  std::mutex mu;
  std::condition_variable cv;
  std::vector<ExitStatus> seen;
  std::vector<Child> kids;
  for (int i = 0; i < 20; i++) {
    SpawnOptions o;
    o.argv = {"/bin/sh", "-c", i % 2 ? "exit 5" : "sleep 30"};
    auto c = spawn_process(o);
    ASSERT_TRUE(c) << c.message();
    ASSERT_TRUE(reaper.watch(c->pidfd.get(), [&](ExitStatus s) {
      std::lock_guard<std::mutex> l(mu);
      seen.push_back(s);
      cv.notify_all();
    }));
    kids.push_back(std::move(*c));
  }
  for (auto& k : kids) signal_process(k.pidfd.get(), SIGKILL);  // the sleepers; the others may be gone already
  std::unique_lock<std::mutex> l(mu);
  ASSERT_TRUE(cv.wait_for(l, std::chrono::seconds(20), [&] { return seen.size() == kids.size(); }));
  int killed = 0;
  for (const auto& s : seen) killed += s.signaled && s.value == SIGKILL;
  EXPECT_GE(killed, 10);
  EXPECT_EQ(reaper.watched(), 0u);
}

}  // namespace
}  // namespace ember::controller
