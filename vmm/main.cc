// ember-vmm: boots one microVM that runs one program (see `ember-vmm run --help`).
#include <fcntl.h>
#include <malloc.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "base/result.h"
#include "vmm/api_vmm.h"
#include "vmm/cli.h"
#include "vmm/machine.h"
#include "vmm/program_image.h"

namespace {

constexpr int kExitUsage = 2;
constexpr int kExitVmm = 125;

void print_error(const std::string& message) {
  const std::string line = "ember-vmm: " + message + "\n";
  ssize_t r = ::write(2, line.data(), line.size());
  (void)r;
}

std::string default_kernel_path() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "ember-guest.elf";
  std::string self(buf, static_cast<size_t>(n));
  const auto slash = self.rfind('/');
  return (slash == std::string::npos ? std::string(".") : self.substr(0, slash)) + "/ember-guest.elf";
}

#ifdef EMBER_TESTING
// ember-vmm-testing only (never in ember-vmm): EMBER_TEST_FORBIDDEN_SYSCALL=
// main|vcpu makes that thread call something its seccomp filter forbids right
// after installing it; the process must die of SIGSYS (tests/integration).
const char* g_forbidden_thread = nullptr;

void forbidden_syscall_hook(const char* thread) {
  if (!g_forbidden_thread || std::strcmp(thread, g_forbidden_thread) != 0) return;
  if (std::strcmp(thread, "main") == 0)
    ::syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);  // no sockets at all
  else
    ::syscall(SYS_openat, AT_FDCWD, "/etc/hostname", O_RDONLY);  // no file opens
  print_error(std::string("TEST: the forbidden syscall on the ") + thread + " thread was allowed");
  ::_exit(3);
}
#endif

// `ember-vmm restore DIR`: see restore_usage_text().
int restore_main(const ember::CliOptions& o, uint64_t t0) {
  ember::MachineConfig config;
  config.restore_dir = o.restore_dir;
  config.timeout_ms = o.timeout_ms;
  config.verbose = o.verbose;
  const char* trace = std::getenv("EMBER_TRACE");
  config.trace = trace && *trace && std::strcmp(trace, "0") != 0;
  config.t0_ns = t0;
  config.detach_teardown = true;
  config.vsock_uds = o.vsock_uds;
  config.seccomp = o.seccomp;
  if (!o.seccomp)
    print_error("WARNING: --no-seccomp: running WITHOUT the seccomp allow-lists; a guest that exploits a VMM bug "
                "gets every syscall. For debugging only, never with untrusted code.");
  std::string input;
  if (!o.vsock_uds.empty()) {
    config.stdin_fd = -1;  // the program's stdin comes over vsock
  } else if (o.repeat > 1) {
    // Every run reads the same input: ember-vmm's stdin, read once.
    char buf[65536];
    for (;;) {
      const ssize_t n = ::read(0, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        print_error(std::string("reading stdin: ") + std::strerror(errno));
        return kExitVmm;
      }
      if (n == 0) break;
      input.append(buf, static_cast<size_t>(n));
    }
    config.stdin_data = &input;
  }
#ifdef EMBER_TESTING
  if (const char* t = std::getenv("EMBER_TEST_FORBIDDEN_SYSCALL"); t && *t) {
    g_forbidden_thread = t;
    config.after_seccomp = forbidden_syscall_hook;
  }
#endif
  auto outcome = ember::restore_and_run(config, o.repeat);
  if (!outcome) {
    print_error(outcome.message());
    return kExitVmm;
  }
  if (!outcome->error.empty()) print_error(outcome->error);
  return outcome->status;
}

std::string basename_of(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

int main(int argc, char** argv) {
  const uint64_t t0 = ember::monotonic_ns();
  // A closed stdin/stdout/stderr would be reused by the next open() (the VM
  // fd!) and program output written into it: park /dev/null there instead.
  for (int fd = 0; fd <= 2; fd++)
    if (::fcntl(fd, F_GETFD) < 0 && ::open("/dev/null", O_RDWR) < 0) return kExitVmm;
  // Past RLIMIT_FSIZE (ember-jailer sets it: a guest printing without end
  // must not fill the host's disk with our log) a write fails with EFBIG
  // instead of killing us: the VM goes on, its log stops growing.
  ::signal(SIGXFSZ, SIG_IGN);
  // One malloc arena: the vCPU thread's few allocations would otherwise get
  // an arena of their own (a 64 MiB reservation, its first pages and a page
  // table page), held by every parked VM for nothing; the threads rarely
  // allocate at once.
  ::mallopt(M_ARENA_MAX, 1);
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::fputs(ember::usage_text().c_str(), stderr);
    return kExitUsage;
  }
  if (ember::is_api_invocation(args)) {  // --api-sock / --config-file: vmm/api_vmm.h
    auto api = ember::parse_api_cli(args);
    if (!api) {
      print_error(api.message());
      return kExitUsage;
    }
    return ember::api_main(*api, t0);
  }
  auto parsed = ember::parse_cli(args);
  if (!parsed) {
    print_error(parsed.message());
    return kExitUsage;
  }
  const ember::CliOptions& o = *parsed;
  if (o.die_with_parent) {
    // Set before the VM exists. The kernel clears it on a uid change, so it is
    // set here, after ember-jailer's, not in the jailer. If our parent (emberd,
    // also through ember-jailer --detach) died between these two lines, init
    // or a subreaper adopted us and nobody would ever signal: refuse to run.
    const pid_t parent = ::getppid();
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) {
      print_error(std::string("--die-with-parent: prctl(PR_SET_PDEATHSIG): ") + std::strerror(errno));
      return kExitVmm;
    }
    if (::getppid() != parent) {
      print_error("--die-with-parent: the process that started ember-vmm has already exited");
      return kExitVmm;
    }
  }
  if (o.command == ember::CliOptions::Command::kHelp) {
    std::fputs(ember::usage_text().c_str(), stdout);
    return 0;
  }
  if (o.command == ember::CliOptions::Command::kRunHelp) {
    std::fputs(ember::run_usage_text().c_str(), stdout);
    return 0;
  }
  if (o.command == ember::CliOptions::Command::kRestoreHelp) {
    std::fputs(ember::restore_usage_text().c_str(), stdout);
    return 0;
  }
  if (o.command == ember::CliOptions::Command::kRestore) return restore_main(o, t0);

  ember::Result<ember::MappedImage> image = ember::Error{};
  if (o.image.empty()) {
    ember::ProgramImageSpec spec;
    spec.program = o.program;
    spec.guest_path = "/bin/" + basename_of(o.program);
    spec.args.push_back(o.program);
    spec.args.insert(spec.args.end(), o.args.begin(), o.args.end());
    spec.env = o.env;
    spec.files = o.files;
    spec.trees = o.trees;
    image = ember::map_program_image(spec);
  } else {
    image = ember::map_image_file(o.image);
  }
  if (!image) {
    print_error(image.message());
    return kExitVmm;
  }

  ember::MachineConfig config;
  config.kernel_path = o.kernel.empty() ? default_kernel_path() : o.kernel;
  config.mem_size = o.mem_mib << 20;
  config.image = image->data();
  config.image_size = image->size;
  config.image_mapped = image->mapping.size();
  config.timeout_ms = o.timeout_ms;
  config.verbose = o.verbose;
  const char* trace = std::getenv("EMBER_TRACE");
  config.trace = trace && *trace && std::strcmp(trace, "0") != 0;
  config.cmdline = o.cmdline;
  config.t0_ns = t0;
  config.detach_teardown = true;
  config.image_path = o.image;
  config.vsock_uds = o.vsock_uds;
  config.snapshot_dir = o.snapshot_at_ready;
  // At a snapshot the console has no input source at all (not even EOF), so
  // the program blocks on its first read. (With --vsock-uds alone the
  // console keeps ember-vmm's stdin: the guest takes stdin from whichever
  // of console and vsock delivers first, api/stdio_protocol.h.)
  if (!o.snapshot_at_ready.empty()) config.stdin_fd = -1;
  if (o.program_stderr_on_stdout) config.stderr_fd = 1;
  config.huge_pages = o.huge_pages;
  config.seccomp = o.seccomp;
  if (!o.seccomp)
    print_error("WARNING: --no-seccomp: running WITHOUT the seccomp allow-lists; a guest that exploits a VMM bug "
                "gets every syscall. For debugging only, never with untrusted code.");
#ifdef EMBER_TESTING
  if (const char* t = std::getenv("EMBER_TEST_FORBIDDEN_SYSCALL"); t && *t) {
    g_forbidden_thread = t;
    config.after_seccomp = forbidden_syscall_hook;
  }
#endif

  auto outcome = ember::run_machine(config);
  if (!outcome) {
    print_error(outcome.message());
    return kExitVmm;
  }
  if (!outcome->error.empty()) print_error(outcome->error);
  return outcome->status;
}
