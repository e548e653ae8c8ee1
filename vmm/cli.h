// Command-line parsing for ember-vmm, separate from main() so that it is
// unit-testable. Parsing is pure: no file is opened here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"

namespace ember {

struct CliOptions {
  enum class Command { kHelp, kRunHelp, kRun, kRestoreHelp, kRestore } command = Command::kHelp;
  std::string kernel;  // empty: ember-guest.elf next to the ember-vmm binary
  uint64_t mem_mib = 128;
  uint64_t timeout_ms = 0;  // 0: none
  std::vector<std::string> env;
  std::vector<std::pair<std::string, std::string>> files;  // run --file HOST:GUEST (PROGRAM only)
  std::vector<std::pair<std::string, std::string>> trees;  // run --tree HOST_DIR:GUEST_DIR (PROGRAM only)
  bool verbose = false;
  std::string cmdline;
  bool seccomp = true;  // --no-seccomp: off (debugging only; logged loudly)
  bool die_with_parent = false;  // --die-with-parent: SIGKILL when the parent exits
  bool program_stderr_on_stdout = false;  // run --program-stderr-on-stdout
  bool huge_pages = false;                // run --huge-pages
  std::string id;       // --id ID: the jail's id (ember-jailer passes it); informational
  std::string vsock_uds;          // --vsock-uds PATH (run, restore)
  std::string snapshot_at_ready;  // run --snapshot-at-ready DIR
  std::string restore_dir;        // restore DIR
  uint64_t repeat = 1;            // restore --repeat N
  std::string image;    // --image IMG
  std::string program;  // PROGRAM (when no --image)
  std::vector<std::string> args;  // after PROGRAM (a leading "--" dropped)
};

inline constexpr uint64_t kMinMemMib = 16;
inline constexpr uint64_t kMaxMemMib = 3072;

// `argv` without the program name: {"run", "--mem-mib", "64", "./hello"}.
// Errors are usage errors (exit 2), one line, naming the offending argument.
Result<CliOptions> parse_cli(const std::vector<std::string>& argv);

std::string usage_text();      // ember-vmm --help
std::string run_usage_text();  // ember-vmm run --help
std::string restore_usage_text();  // ember-vmm restore --help

}  // namespace ember
