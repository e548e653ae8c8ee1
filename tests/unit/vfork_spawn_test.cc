// jailer/vfork_spawn.h: the child runs on its own stack in this process's
// memory, and the caller resumes only once the child has exec'd or exited;
// a sibling is the caller's parent's child.
#include "jailer/vfork_spawn.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ember::jail {
namespace {

alignas(16) char g_stack[64 * 1024];

int exit_status(pid_t pid) {
  int ws = 0;
  if (::waitpid(pid, &ws, 0) != pid || !WIFEXITED(ws)) return -1;
  return WEXITSTATUS(ws);
}

TEST(VforkSpawn, ChildWritesThisMemoryBeforeTheCallerResumes) {
  volatile pid_t seen = 0;
  const pid_t pid = spawn_sharing_memory(
      [](void* arg) {
        *static_cast<volatile pid_t*>(arg) = ::getpid();  // shared memory, not a copy
        ::_exit(7);
      },
      const_cast<pid_t*>(&seen), g_stack, sizeof g_stack, -1);
  ASSERT_GT(pid, 0) << std::strerror(errno);
  EXPECT_EQ(seen, pid) << "the child's write is visible as soon as spawn returns";
  EXPECT_EQ(exit_status(pid), 7);
}

TEST(VforkSpawn, AFunctionThatReturnsExits127) {
  const pid_t pid = spawn_sharing_memory([](void*) {}, nullptr, g_stack, sizeof g_stack, -1);
  ASSERT_GT(pid, 0) << std::strerror(errno);
  EXPECT_EQ(exit_status(pid), 127);
}

TEST(VforkSpawn, TheChildCanExec) {
  const pid_t pid = spawn_sharing_memory(
      [](void*) {
        char* const argv[] = {const_cast<char*>("sh"), const_cast<char*>("-c"), const_cast<char*>("exit 3"), nullptr};
        char* const envp[] = {nullptr};
        ::execve("/bin/sh", argv, envp);
        ::_exit(99);
      },
      nullptr, g_stack, sizeof g_stack, -1);
  ASSERT_GT(pid, 0) << std::strerror(errno);
  EXPECT_EQ(exit_status(pid), 3);
}

// ember-jailer --detach: the child is the caller's parent's. A forked
// helper plays the jailer: it starts the child as a sibling, reports its pid
// and exits; this process, the helper's parent, then reaps the child.
TEST(VforkSpawn, ASiblingIsTheParentsToReap) {
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  const pid_t helper = ::fork();
  ASSERT_GE(helper, 0);
  if (helper == 0) {
    const pid_t c = spawn_sharing_memory([](void*) { ::_exit(9); }, nullptr, g_stack, sizeof g_stack, -1, true);
    const bool ours = c > 0 && ::waitpid(c, nullptr, WNOHANG) < 0 && errno == ECHILD;  // not the helper's child
    if (::write(p[1], &c, sizeof c) != sizeof c) ::_exit(2);
    ::_exit(ours ? 0 : 1);
  }
  ::close(p[1]);
  pid_t child = -1;
  ASSERT_EQ(::read(p[0], &child, sizeof child), static_cast<ssize_t>(sizeof child));
  ::close(p[0]);
  EXPECT_EQ(exit_status(helper), 0) << "the helper could wait for its sibling";
  ASSERT_GT(child, 0);
  EXPECT_EQ(exit_status(child), 9) << "the sibling is this process's child";
}

TEST(VforkSpawn, AnFdThatIsNotACgroupIsRefused) {
  const int not_a_cgroup = ::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(not_a_cgroup, 0);
  errno = 0;
  const pid_t pid = spawn_sharing_memory([](void*) { ::_exit(0); }, nullptr, g_stack, sizeof g_stack, not_a_cgroup);
  const int err = errno;
  ::close(not_a_cgroup);
  if (pid > 0) exit_status(pid);
  EXPECT_EQ(pid, -1);
  EXPECT_NE(err, 0);
}

}  // namespace
}  // namespace ember::jail
