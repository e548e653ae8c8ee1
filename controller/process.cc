#include "controller/process.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chrono>

#include "controller/fsutil.h"

namespace ember::controller {

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

std::string ExitStatus::describe() const {
  if (!signaled) return "exited with status " + std::to_string(value);
  const char* name = ::sigabbrev_np(value);
  return "killed by signal " + std::to_string(value) + (name ? std::string(" (SIG") + name + ")" : "");
}

Result<Child> spawn_process(const SpawnOptions& o) {
  if (o.argv.empty()) return Error{"spawn: empty argv"};
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  ::posix_spawn_file_actions_init(&fa);
  ::posix_spawnattr_init(&attr);
  const int fds[3] = {o.stdin_fd, o.stdout_fd, o.stderr_fd};
  for (int i = 0; i < 3; i++) {
    if (fds[i] >= 0) ::posix_spawn_file_actions_adddup2(&fa, fds[i], i);
    else ::posix_spawn_file_actions_addopen(&fa, i, "/dev/null", i == 0 ? O_RDONLY : O_WRONLY, 0);
  }
  ::posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  ::posix_spawnattr_setsigmask(&attr, &none);
  ::posix_spawnattr_setsigdefault(&attr, &all);
  ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSID);

  std::vector<char*> argv, envp;
  for (const auto& a : o.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : o.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, o.argv[0].c_str(), &fa, &attr, argv.data(), envp.data());
  ::posix_spawn_file_actions_destroy(&fa);
  ::posix_spawnattr_destroy(&attr);
  if (rc != 0) return errno_error("spawn " + o.argv[0], rc);
  Child c;
  c.pid = pid;
  c.pidfd = Fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!c.pidfd.valid()) {
    const int e = errno;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return errno_error("pidfd_open", e);
  }
  ::fcntl(c.pidfd.get(), F_SETFD, FD_CLOEXEC);
  return c;
}

bool signal_process(int pidfd, int sig) { return ::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0) == 0; }

static ExitStatus from_siginfo(const siginfo_t& si) {
  ExitStatus s;
  if (si.si_code == CLD_EXITED) {
    s.value = si.si_status;
  } else {
    s.signaled = true;
    s.value = si.si_status;
  }
  return s;
}

Result<ExitStatus> wait_process(int pidfd) {
  siginfo_t si{};
  for (;;) {
    if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &si, WEXITED) == 0) return from_siginfo(si);
    if (errno != EINTR) return errno_error("waitid");
  }
}

Result<ExitStatus> wait_process_until(int pidfd, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    ExitStatus st;
    if (try_wait_process(pidfd, &st)) return st;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return Error{"still running after its deadline"};
    struct pollfd pfd = {pidfd, POLLIN, 0};  // readable once the process has exited
    if (::poll(&pfd, 1, static_cast<int>(left.count())) < 0 && errno != EINTR) return errno_error("poll(pidfd)");
  }
}

Result<Child> adopt_child(pid_t pid) {
  Child c;
  c.pid = pid;
  c.pidfd = Fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!c.pidfd.valid()) return errno_error("pidfd_open " + std::to_string(pid));
  ::fcntl(c.pidfd.get(), F_SETFD, FD_CLOEXEC);
  // Only a child can be waited for: WNOWAIT looks without reaping.
  siginfo_t si{};
  if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(c.pidfd.get()), &si, WEXITED | WNOHANG | WNOWAIT) < 0)
    return errno_error("process " + std::to_string(pid) + " is not a child of emberd");
  return c;
}

void discard_child(pid_t pid) {
  siginfo_t si{};
  // Until it is reaped, a child's pid cannot be reused: checked, then safe to kill.
  if (::waitid(P_PID, static_cast<id_t>(pid), &si, WEXITED | WNOHANG | WNOWAIT) != 0) return;
  ::kill(pid, SIGKILL);
  while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
}

bool try_wait_process(int pidfd, ExitStatus* out) {
  siginfo_t si{};
  if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &si, WEXITED | WNOHANG) != 0) return false;
  if (si.si_pid == 0) return false;
  *out = from_siginfo(si);
  return true;
}

Result<RunResult> run_command(const std::vector<std::string>& argv, uint64_t timeout_ms,
                              const std::vector<std::string>& env) {
  int po[2], pe[2];
  if (::pipe2(po, O_CLOEXEC) < 0) return errno_error("pipe");
  Fd out_rd(po[0]), out_wr(po[1]);
  if (::pipe2(pe, O_CLOEXEC) < 0) return errno_error("pipe");
  Fd err_rd(pe[0]), err_wr(pe[1]);
  SpawnOptions o;
  o.argv = argv;
  o.env = env.empty() ? std::vector<std::string>{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"} : env;
  o.stdout_fd = out_wr.get();
  o.stderr_fd = err_wr.get();
  EMBER_TRY(Child c, spawn_process(o));
  out_wr.reset();
  err_wr.reset();
  RunResult r;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  char buf[4096];
  struct pollfd pfd[2] = {{out_rd.get(), POLLIN, 0}, {err_rd.get(), POLLIN, 0}};
  while (pfd[0].fd >= 0 || pfd[1].fd >= 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      r.timed_out = true;
      signal_process(c.pidfd.get(), SIGKILL);
      break;
    }
    const int n = ::poll(pfd, 2, static_cast<int>(left));
    if (n <= 0) continue;  // EINTR, or the deadline (checked above)
    for (int i = 0; i < 2; i++) {
      if (pfd[i].fd < 0 || !pfd[i].revents) continue;
      const ssize_t got = ::read(pfd[i].fd, buf, sizeof buf);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        pfd[i].fd = -1;  // closed (poll skips negative fds)
        continue;
      }
      if (r.output.size() < 65536) r.output.append(buf, static_cast<size_t>(got));
      if (i == 1 && r.errors.size() < 65536) r.errors.append(buf, static_cast<size_t>(got));
    }
  }
  EMBER_TRY(r.status, wait_process(c.pidfd.get()));
  return r;
}

Reaper::Reaper() = default;

Reaper::~Reaper() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  if (wake_.valid()) {
    const uint64_t one = 1;
    ssize_t w = ::write(wake_.get(), &one, sizeof one);
    (void)w;
  }
  if (thread_.joinable()) thread_.join();
}

Result<void> Reaper::start() {
  epoll_ = Fd(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_.valid()) return errno_error("epoll_create1");
  wake_ = Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_.valid()) return errno_error("eventfd");
  struct epoll_event ev {};
  ev.events = EPOLLIN;
  ev.data.fd = wake_.get();
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &ev) < 0) return errno_error("epoll_ctl");
  thread_ = std::thread([this] { loop(); });
  return Ok();
}

Result<void> Reaper::watch(int pidfd, Callback cb) {
  {
    std::lock_guard<std::mutex> l(mu_);
    callbacks_[pidfd] = std::move(cb);
  }
  struct epoll_event ev {};
  ev.events = EPOLLIN | EPOLLONESHOT;
  ev.data.fd = pidfd;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, pidfd, &ev) < 0) {
    const int e = errno;
    std::lock_guard<std::mutex> l(mu_);
    callbacks_.erase(pidfd);
    return errno_error("epoll_ctl(pidfd)", e);
  }
  return Ok();
}

size_t Reaper::watched() const {
  std::lock_guard<std::mutex> l(mu_);
  return callbacks_.size();
}

void Reaper::loop() {
  struct epoll_event evs[64];
  for (;;) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stop_) return;
    }
    const int n = ::epoll_wait(epoll_.get(), evs, 64, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    for (int i = 0; i < n; i++) {
      const int fd = evs[i].data.fd;
      if (fd == wake_.get()) {
        uint64_t v;
        ssize_t r = ::read(wake_.get(), &v, sizeof v);
        (void)r;
        continue;
      }
      ExitStatus st;
      if (!try_wait_process(fd, &st)) {
        // Readable but not reapable (should not happen): look again later.
        struct epoll_event ev {};
        ev.events = EPOLLIN | EPOLLONESHOT;
        ev.data.fd = fd;
        ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev);
        continue;
      }
      ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
      Callback cb;
      {
        std::lock_guard<std::mutex> l(mu_);
        auto it = callbacks_.find(fd);
        if (it == callbacks_.end()) continue;
        cb = std::move(it->second);
        callbacks_.erase(it);
      }
      if (cb) cb(st);
    }
  }
}

namespace {

// A process's arguments; none once it has gone (or with over 1 MiB of them:
// never one of ours).
std::vector<std::string> read_cmdline(const char* pid) {
  auto read = read_file(std::string("/proc/") + pid + "/cmdline", 1 << 20);
  const std::string all = read ? std::move(*read) : std::string();
  std::vector<std::string> args;
  for (size_t start = 0; start < all.size();) {
    size_t end = all.find('\0', start);
    if (end == std::string::npos) end = all.size();
    args.push_back(all.substr(start, end - start));
    start = end + 1;
  }
  return args;
}

}  // namespace

std::vector<Fd> kill_processes_with_id(const std::function<bool(const std::string&)>& match) {
  std::vector<Fd> killed;
  DIR* d = ::opendir("/proc");
  if (!d) return killed;
  while (struct dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    const pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
    if (pid == ::getpid()) continue;
    const auto args = read_cmdline(e->d_name);
    for (size_t i = 0; i + 1 < args.size(); i++) {
      if (args[i] != "--id" || !match(args[i + 1])) continue;
      Fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
      // The process may have gone and its pid been reused between the read
      // and the open: with the pidfd held, its command line must still be
      // the one we found.
      if (pidfd.valid() && read_cmdline(e->d_name) == args && signal_process(pidfd.get(), SIGKILL))
        killed.push_back(std::move(pidfd));
      break;
    }
  }
  ::closedir(d);
  return killed;
}

}  // namespace ember::controller
