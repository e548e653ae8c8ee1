// jailer/vfork_spawn.h: the child runs on its own stack in this process's
// memory, and the caller resumes only once the child has exec'd or exited.
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
