// Shared by the snapshot and vsock integration tests: temporary snapshot
// directories, taking a snapshot at the ready point, an ember-vmm running in
// the background (for vsock clients), and the snapshot_startup program's
// table (tests/guest/snapshot_startup.c) recomputed on the host.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/integration/vm_fixture.h"

extern char** environ;

namespace ember::testing {

// A temporary directory, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/ember-snapshot-test-XXXXXX";
    if (::mkdtemp(tmpl)) path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// ember-vmm (or anything) in the background; killed at destruction if it
// still runs. stdin is /dev/null or a FIFO nobody writes (no input, no EOF);
// stdout and stderr go to files.
class Background {
 public:
  Background(const std::vector<std::string>& argv, const std::string& out_path, const std::string& err_path,
             bool stdin_never_ends = false) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (stdin_never_ends) {
      fifo_ = out_path + ".stdin";
      ::mkfifo(fifo_.c_str(), 0600);
      keep_ = ::open(fifo_.c_str(), O_RDWR | O_CLOEXEC);  // a writer that never writes
      posix_spawn_file_actions_addopen(&fa, 0, fifo_.c_str(), O_RDONLY, 0);
    } else {
      posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    }
    posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    if (posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
  }
  ~Background() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (keep_ >= 0) ::close(keep_);
    if (!fifo_.empty()) ::unlink(fifo_.c_str());
  }
  bool started() const { return pid_ > 0; }
  // The exit status as a shell reports it; -1 if it did not end in time.
  int wait(int timeout_ms = 30000) {
    for (int waited = 0; pid_ > 0; waited += 5) {
      int ws = 0;
      const pid_t r = ::waitpid(pid_, &ws, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
      }
      if (waited >= timeout_ms) return -1;
      ::usleep(5000);
    }
    return -1;
  }

 private:
  pid_t pid_ = -1;
  int keep_ = -1;
  std::string fifo_;
};

inline std::string read_file(const std::string& path) {
  std::string s;
  if (FILE* f = std::fopen(path.c_str(), "rb")) {
    char buf[65536];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) s.append(buf, n);
    std::fclose(f);
  }
  return s;
}

class SnapshotTest : public VmTest {
 protected:
  // ember-vmm run --snapshot-at-ready DIR PROGRAM; expects status 0.
  static void take_snapshot(const std::string& program, const std::string& dir,
                            const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {bin("ember-vmm"), "run", "--timeout-ms", "30000"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.insert(argv.end(), {"--snapshot-at-ready", dir, program});
    const ProcessResult r = run_process(argv);
    ASSERT_EQ(r.status, 0) << r.err;
    ASSERT_TRUE(std::filesystem::exists(dir + "/vm.vmstate")) << r.err;
  }
  static ProcessResult restore(const std::string& dir, const std::string& input,
                               const std::vector<std::string>& flags = {}) {
    std::vector<std::string> argv = {bin("ember-vmm"), "restore", "--timeout-ms", "30000"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    argv.push_back(dir);
    return run_process(argv, input);
  }
};

// tests/guest/snapshot_startup.c's table, computed the same way.
inline uint64_t startup_mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  return x ^ (x >> 33);
}
inline const std::vector<uint64_t>& startup_table() {
  static const std::vector<uint64_t> t = [] {
    std::vector<uint64_t> v(16u * 1024 * 1024 / 8);
    for (uint32_t i = 0; i < v.size(); i++) v[i] = startup_mix(i) ^ (i ? v[i - 1] >> 7 : 0);
    return v;
  }();
  return t;
}

}  // namespace ember::testing
