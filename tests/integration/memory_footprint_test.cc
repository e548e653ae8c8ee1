// Memory the program does not touch is never touched: a 1 GiB microVM whose
// program waits on stdin costs the host only what the guest kernel, the
// program and the VMM actually use.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>

#include "tests/integration/vm_fixture.h"

extern char** environ;

namespace ember::testing {
namespace {

// Resident set of PID in KiB (VmRSS), or -1.
long rss_kib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

class MemoryFootprint : public VmTest {};

TEST_F(MemoryFootprint, IdleGigabyteGuestStaysSmall) {
  int in[2];
  ASSERT_EQ(pipe2(in, O_CLOEXEC), 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  const std::string vmm = bin("ember-vmm"), prog = guest_program("echo-glibc");
  std::vector<std::string> argv = {vmm, "run", "--mem-mib", "1024", "--timeout-ms", "30000", prog};
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t pid;
  ASSERT_EQ(posix_spawn(&pid, vmm.c_str(), &fa, nullptr, args.data(), environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  close(in[0]);

  // Let the guest boot and block on stdin, then sample the VMM's resident set.
  long rss = -1;
  for (int i = 0; i < 20; i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    rss = std::max(rss, rss_kib(pid));
  }
  ASSERT_GT(rss, 0) << "ember-vmm exited early";
  EXPECT_LT(rss, 12 * 1024) << "a 1 GiB guest that touched little should not cost " << rss << " KiB";

  ASSERT_EQ(write(in[1], "ping", 4), 4);
  close(in[1]);
  int ws = 0;
  ASSERT_EQ(waitpid(pid, &ws, 0), pid);
  EXPECT_TRUE(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
}

}  // namespace
}  // namespace ember::testing
