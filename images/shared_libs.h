// The files a dynamic program needs at run time, found on this host as its
// ld.so would find them, so that an image carries them: the interpreter
// (PT_INTERP) and every DT_NEEDED library, recursively, each searched in
// the asking object's DT_RPATH (when it has no DT_RUNPATH, and the
// program's too), its DT_RUNPATH, the directories of /etc/ld.so.conf (what
// ld.so.cache is built from) and the standard directories. $ORIGIN is the
// asking object's directory. Libraries of another class or machine are
// skipped, as ld.so skips them.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"
#include "images/program_check.h"

namespace ember::image {

struct Dependency {
  std::string host_path;   // where it was found on this host
  std::string guest_path;  // where the guest's ld.so (which has no ld.so.cache) will look for it
};

// For the program at `program_path` whose headers say `info` (inspect_program);
// empty for a static program. The error names the library that is missing
// and who asked for it. `modules`: shared objects packed beside it (a
// Python's extension modules, say) whose libraries come along too, as far
// as this host has them (one it lacks fails only that module's import).
struct Module {
  std::string host_path;
  ProgramInfo info;
};
Result<std::vector<Dependency>> program_dependencies(const std::string& program_path, const ProgramInfo& info,
                                                     const std::vector<Module>& modules = {});

// The directories /etc/ld.so.conf names (with its includes), in order.
std::vector<std::string> ld_so_conf_dirs(const std::string& conf = "/etc/ld.so.conf");

}  // namespace ember::image
