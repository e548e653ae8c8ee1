#include "vmm/cli.h"

#include <cstdint>

#include "base/cli_option.h"
#include "base/parse.h"
#include "images/image_writer.h"

namespace ember {

std::string usage_text() {
  return "usage: ember-vmm run [OPTIONS] (--image IMG | PROGRAM) [-- ARGS...]\n"
         "       ember-vmm restore [OPTIONS] DIR\n"
         "       ember-vmm run --help | ember-vmm restore --help\n"
         "       ember-vmm --api-sock PATH [--id ID] | --config-file FILE [--no-api]\n"
         "\n"
         "ember-vmm boots one microVM that runs one program and exits with the\n"
         "program's exit status (128+N when it died of signal N). The program's\n"
         "stdin, stdout and stderr are ember-vmm's own.\n"
         "\n"
         "examples:\n"
         "  ember-vmm run ./hello\n"
         "  ember-vmm run --env NAME=x --timeout-ms 2000 ./prog -- arg1 arg2\n"
         "  ember-vmm run --image fn.img < request.txt\n"
         "  ember-vmm run --snapshot-at-ready snap/ ./prog   # snapshot where it first reads stdin\n"
         "  ember-vmm restore snap/ < request.txt             # continue from there\n"
         "  ember-vmm --api-sock /tmp/vm.sock                 # Firecracker-compatible API\n"
         "\n"
         "Exit status: the program's; 124 timeout; 125 VM or VMM failure; 2 usage error.\n"
         "See `ember-vmm run --help`, `ember-vmm restore --help` and\n"
         "`ember-vmm --api-sock PATH --help` for every option.\n";
}

std::string run_usage_text() {
  return "usage: ember-vmm run [OPTIONS] (--image IMG | PROGRAM) [-- ARGS...]\n"
         "\n"
         "Boots a microVM running PROGRAM (a static Linux x86-64 ELF, packed on the\n"
         "fly into a function image) or the function image IMG (built with\n"
         "`ember-image pack`). Options must come before PROGRAM; everything after\n"
         "PROGRAM (and after an optional `--`) is passed to it as ARGS, with argv[0]\n"
         "= PROGRAM as given.\n"
         "\n"
         "options:\n"
         "  --kernel PATH      guest kernel ELF (default: ember-guest.elf next to the\n"
         "                     ember-vmm binary)\n"
         "                       e.g. --kernel build/bin/ember-guest.elf\n"
         "  --mem-mib N        guest RAM in MiB: even, 16..3072 (default 128)\n"
         "                       e.g. --mem-mib 512\n"
         "  --timeout-ms N     kill the VM after N ms: prints \"guest timed out after\n"
         "                     N ms\" and exits 124 (default: no limit)\n"
         "                       e.g. --timeout-ms 5000\n"
         "  --env K=V          add K=V to the program's environment (repeatable;\n"
         "                     PROGRAM only: an image carries its own)\n"
         "                       e.g. --env LANG=C --env DEBUG=1\n"
         "  --file HOST:GUEST  put host file HOST at GUEST in the guest (repeatable;\n"
         "                     PROGRAM only). A dynamic PROGRAM brings its loader and\n"
         "                     libraries by itself (ember-image pack --help)\n"
         "                       e.g. --file data/in.txt:/data/in.txt\n"
         "  --tree HOST_DIR:GUEST_DIR\n"
         "                     every regular file below HOST_DIR, under GUEST_DIR\n"
         "                       e.g. --tree /usr/lib/python3.11:/usr/lib/python3.11\n"
         "  --huge-pages       back guest RAM with transparent huge pages where the\n"
         "                     host allows (MADV_HUGEPAGE): a program's first touch\n"
         "                     of memory faults once per 2 MiB instead of per 4 KiB,\n"
         "                     and each touched 2 MiB costs the host 2 MiB\n"
         "  --image IMG        run the function image IMG instead of a PROGRAM\n"
         "                       e.g. --image fn.img\n"
         "  --cmdline TEXT     guest kernel command line (boot info), for debugging\n"
         "  --snapshot-at-ready DIR\n"
         "                     when the program first blocks reading stdin, pause the\n"
         "                     VM, write a snapshot to DIR (vm.vmstate, vm.mem, vm.img;\n"
         "                     DIR must be absent, empty or an older snapshot) and exit\n"
         "                     0. The program gets no stdin in this run.\n"
         "                       e.g. --snapshot-at-ready /var/lib/ember/fn1\n"
         "  --vsock-uds PATH   the VM's virtio-vsock device answers host connections on\n"
         "                     the Unix socket PATH (\"CONNECT <port>\\n\", Firecracker's\n"
         "                     convention); guest connections to host port P go to\n"
         "                     PATH_P. The program's stdin then comes over vsock\n"
         "                     (api/stdio_protocol.h), never from ember-vmm's stdin.\n"
         "                       e.g. --vsock-uds /run/ember/vm1.sock\n"
         "  --no-seccomp       do NOT confine ember-vmm's threads with their seccomp\n"
         "                     allow-lists (on by default; for debugging only, never\n"
         "                     with untrusted guests; a warning is printed)\n"
         "  --die-with-parent  the kernel kills ember-vmm (SIGKILL) when the process\n"
         "                     that started it exits, however it exits (emberd\n"
         "                     passes it: no VM outlives its controller)\n"
         "  --program-stderr-on-stdout\n"
         "                     the program's stderr goes to stdout too, so that stderr\n"
         "                     holds only ember-vmm's (and ember-jailer's) own words:\n"
         "                     what emberd reads to tell a host failure from the\n"
         "                     program's, which the program could otherwise forge\n"
         "  --id ID            the id of the jail this VMM runs in ([A-Za-z0-9-],\n"
         "                     1-64 chars; ember-jailer passes it)\n"
         "  -v, --verbose      diagnostics on stderr: guest log lines, faults\n"
         "                     (\"program killed by SIGSEGV: #PF at rip=...\"), boot\n"
         "                     timing and exit counts (EMBER_TRACE=1 prints the timing\n"
         "                     line alone)\n"
         "  -h, --help         this text\n"
         "\n"
         "examples:\n"
         "  ember-vmm run ./hello\n"
         "  echo hi | ember-vmm run --mem-mib 64 ./cat\n"
         "  ember-vmm run --env GREETING=hello ./prog -- --flag value\n"
         "  ember-vmm run --timeout-ms 1000 --image fn.img < input.json\n"
         "\n"
         "exit status: the program's (128+N if killed by signal N); 124 timeout;\n"
         "125 VM or VMM failure; 2 usage error.\n";
}

std::string restore_usage_text() {
  return "usage: ember-vmm restore [OPTIONS] DIR\n"
         "\n"
         "Restores the microVM saved in the snapshot directory DIR (written by `ember-vmm\n"
         "run --snapshot-at-ready DIR`) in a new process and a new VM: guest memory is\n"
         "mapped copy-on-write from DIR/vm.mem, the program continues where it first\n"
         "blocked reading stdin, and ember-vmm exits with its status, as `run` does.\n"
         "The guest's clock is set to the host's time and it gets a new random seed.\n"
         "\n"
         "options:\n"
         "  --vsock-uds PATH   stdin/stdout/stderr/exit over vsock: host clients connect\n"
         "                     to the Unix socket PATH and send \"CONNECT 1024\\n\"\n"
         "                     (api/stdio_protocol.h); ember-vmm's stdin is not read\n"
         "                       e.g. --vsock-uds /run/ember/vm1.sock\n"
         "  --repeat N         run the program N times: after each run the VM is reset\n"
         "                     in place to the snapshot (same process, same KVM VM) and\n"
         "                     runs again with the same stdin (read once; with\n"
         "                     --vsock-uds each run serves one connection); each run's\n"
         "                     output goes to stdout. Exit status: the last run's; a\n"
         "                     timeout or VMM failure stops at once (default 1)\n"
         "                       e.g. --repeat 100\n"
         "  --timeout-ms N     kill the VM when a run takes longer than N ms (124)\n"
         "  --no-seccomp       no seccomp allow-lists (debugging only; loud)\n"
         "  --die-with-parent  SIGKILL when the process that started it exits\n"
         "  --id ID            the id of the jail this VMM runs in\n"
         "  -v, --verbose      diagnostics on stderr (EMBER_TRACE=1: the timing line)\n"
         "  -h, --help         this text\n"
         "\n"
         "examples:\n"
         "  ember-vmm restore snap/ < request.json\n"
         "  ember-vmm restore --repeat 100 snap/ < request.json\n"
         "  ember-vmm restore --vsock-uds /tmp/vm.sock snap/\n"
         "\n"
         "exit status: the program's (128+N if killed by signal N); 124 timeout;\n"
         "125 VM or VMM failure, a missing or damaged snapshot included; 2 usage error.\n";
}

namespace {

Result<CliOptions> parse_restore(const std::vector<std::string>& argv) {
  CliOptions o;
  o.command = CliOptions::Command::kRestore;
  bool options_done = false;
  for (size_t i = 1; i < argv.size(); i++) {
    const std::string& a = argv[i];
    if (!options_done && a == "--") {
      options_done = true;
      continue;
    }
    if (options_done || a.size() < 2 || a[0] != '-') {
      if (!o.restore_dir.empty()) return Error{"restore takes one snapshot directory ('" + a + "' is a second)"};
      if (a.empty()) return Error{"empty snapshot directory"};
      o.restore_dir = a;
      continue;
    }
    CliOption opt(argv, &i, "`ember-vmm restore --help`");
    const std::string& name = opt.name();
    auto value = [&] { return opt.value(); };
    auto flag = [&] { return opt.flag(); };
    uint64_t n;
    if (name == "-h" || name == "--help") {
      EMBER_TRY_VOID(flag());
      o.command = CliOptions::Command::kRestoreHelp;
      return o;
    } else if (name == "-v" || name == "--verbose") {
      EMBER_TRY_VOID(flag());
      o.verbose = true;
    } else if (name == "--vsock-uds") {
      EMBER_TRY(o.vsock_uds, value());
      if (o.vsock_uds.empty() || o.vsock_uds.size() > 100) return Error{"--vsock-uds needs a path of 1-100 bytes"};
    } else if (name == "--repeat") {
      EMBER_TRY(auto v, value());
      if (!parse_u64(v, &n) || n < 1 || n > 1000000000) return Error{"--repeat " + v + ": must be a number from 1"};
      o.repeat = n;
    } else if (name == "--timeout-ms") {
      EMBER_TRY(auto v, value());
      if (!parse_u64(v, &n) || n > 1000ull * 3600 * 24 * 365)
        return Error{"--timeout-ms " + v + ": must be a number of milliseconds (0: no limit)"};
      o.timeout_ms = n;
    } else if (name == "--no-seccomp") {
      EMBER_TRY_VOID(flag());
      o.seccomp = false;
    } else if (name == "--die-with-parent") {
      EMBER_TRY_VOID(flag());
      o.die_with_parent = true;
    } else if (name == "--id") {
      EMBER_TRY(o.id, value());
      bool valid = !o.id.empty() && o.id.size() <= 64;
      for (char c : o.id)
        valid &= (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
      if (!valid) return Error{"--id " + o.id + ": expected 1-64 characters from [A-Za-z0-9-]"};
    } else {
      return Error{"unknown option '" + a + "' (see `ember-vmm restore --help`)"};
    }
  }
  if (o.restore_dir.empty()) return Error{"missing snapshot directory (see `ember-vmm restore --help`)"};
  return o;
}

}  // namespace

Result<CliOptions> parse_cli(const std::vector<std::string>& argv) {
  CliOptions o;
  if (argv.empty()) return Error{"missing command (try `ember-vmm --help`)"};
  const std::string& cmd = argv[0];
  if (cmd == "-h" || cmd == "--help" || cmd == "help") {
    o.command = CliOptions::Command::kHelp;
    return o;
  }
  if (cmd == "restore") return parse_restore(argv);
  if (cmd != "run") return Error{"unknown command '" + cmd + "' (try `ember-vmm --help`)"};
  o.command = CliOptions::Command::kRun;

  size_t i = 1;
  bool options_done = false;
  while (i < argv.size() && !options_done) {
    const std::string& a = argv[i];
    if (a == "--") {
      options_done = true;
      i++;
      break;
    }
    if (a.size() < 2 || a[0] != '-') break;  // PROGRAM
    // --name=value or --name value
    CliOption opt(argv, &i, "`ember-vmm run --help`");
    const std::string& name = opt.name();
    auto value = [&] { return opt.value(); };
    auto flag = [&] { return opt.flag(); };
    if (name == "-h" || name == "--help") {
      EMBER_TRY_VOID(flag());
      o.command = CliOptions::Command::kRunHelp;
      return o;
    } else if (name == "-v" || name == "--verbose") {
      EMBER_TRY_VOID(flag());
      o.verbose = true;
    } else if (name == "--kernel") {
      EMBER_TRY(o.kernel, value());
      if (o.kernel.empty()) return Error{"--kernel needs a path"};
    } else if (name == "--mem-mib") {
      EMBER_TRY(auto v, value());
      uint64_t n;
      if (!parse_u64(v, &n) || n < kMinMemMib || n > kMaxMemMib || n % 2)
        return Error{"--mem-mib " + v + ": must be an even number of MiB from 16 to 3072"};
      o.mem_mib = n;
    } else if (name == "--timeout-ms") {
      EMBER_TRY(auto v, value());
      uint64_t n;
      if (!parse_u64(v, &n) || n > 1000ull * 3600 * 24 * 365)
        return Error{"--timeout-ms " + v + ": must be a number of milliseconds (0: no limit)"};
      o.timeout_ms = n;
    } else if (name == "--env") {
      EMBER_TRY(auto v, value());
      const auto eq = v.find('=');
      if (eq == std::string::npos || eq == 0) return Error{"--env " + v + ": expected KEY=VALUE"};
      if (v.find('\0') != std::string::npos) return Error{"--env: NUL byte in " + v.substr(0, eq)};
      o.env.push_back(v);
    } else if (name == "--file" || name == "--tree") {
      EMBER_TRY(auto v, value());
      auto hg = image::parse_host_guest(v);
      if (!hg) return Error{name + " " + hg.message()};
      (name == "--file" ? o.files : o.trees).push_back(*hg);
    } else if (name == "--image") {
      EMBER_TRY(o.image, value());
      if (o.image.empty()) return Error{"--image needs a path"};
    } else if (name == "--cmdline") {
      EMBER_TRY(o.cmdline, value());
    } else if (name == "--snapshot-at-ready") {
      EMBER_TRY(o.snapshot_at_ready, value());
      if (o.snapshot_at_ready.empty()) return Error{"--snapshot-at-ready needs a directory"};
    } else if (name == "--vsock-uds") {
      EMBER_TRY(o.vsock_uds, value());
      if (o.vsock_uds.empty() || o.vsock_uds.size() > 100) return Error{"--vsock-uds needs a path of 1-100 bytes"};
    } else if (name == "--no-seccomp") {
      EMBER_TRY_VOID(flag());
      o.seccomp = false;
    } else if (name == "--die-with-parent") {
      EMBER_TRY_VOID(flag());
      o.die_with_parent = true;
    } else if (name == "--program-stderr-on-stdout") {
      EMBER_TRY_VOID(flag());
      o.program_stderr_on_stdout = true;
    } else if (name == "--huge-pages") {
      EMBER_TRY_VOID(flag());
      o.huge_pages = true;
    } else if (name == "--id") {
      EMBER_TRY(o.id, value());
      bool valid = !o.id.empty() && o.id.size() <= 64;
      for (char c : o.id)
        valid &= (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
      if (!valid) return Error{"--id " + o.id + ": expected 1-64 characters from [A-Za-z0-9-]"};
    } else {
      return Error{"unknown option '" + a + "' (see `ember-vmm run --help`)"};
    }
    i++;
  }

  if (!o.image.empty()) {
    if (i < argv.size()) {
      // `--image IMG -- ARGS` or a stray PROGRAM.
      return Error{"'" + argv[i] + "': with --image the image carries the program and its arguments"};
    }
    if (!o.env.empty()) return Error{"--env applies only to a PROGRAM (an image carries its own environment)"};
    if (!o.files.empty() || !o.trees.empty()) return Error{"--file and --tree apply only to a PROGRAM (an image carries its own files)"};
    return o;
  }
  if (i >= argv.size()) return Error{"missing PROGRAM or --image IMG (see `ember-vmm run --help`)"};
  o.program = argv[i++];
  if (o.program.empty()) return Error{"empty PROGRAM path"};
  if (i < argv.size() && argv[i] == "--") i++;
  o.args.assign(argv.begin() + static_cast<std::ptrdiff_t>(i), argv.end());
  return o;
}

}  // namespace ember
