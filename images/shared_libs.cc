#include "images/shared_libs.h"

#include <glob.h>
#include <sys/stat.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <set>
#include <sstream>

#include "images/image_writer.h"

namespace ember::image {

namespace {

// Where the guest's ld.so looks without a cache (Debian's system
// directories): a library found anywhere else on the host (a directory of
// ld.so.conf) is packed into the first of them.
const std::vector<std::string> kStandardDirs = {"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64",
                                                "/usr/lib64", "/lib", "/usr/lib"};
constexpr size_t kMaxLibraries = 1024;

std::string dir_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

bool regular_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string real_path(const std::string& path) {
  char buf[PATH_MAX];
  return ::realpath(path.c_str(), buf) ? std::string(buf) : path;
}

// A search path entry with $ORIGIN expanded; "" for one ld.so would not use
// here ($LIB, $PLATFORM: not expanded for x86-64 Debian's multiarch layout).
std::string expand(const std::string& dir, const std::string& origin) {
  std::string out;
  for (size_t i = 0; i < dir.size();) {
    if (dir.compare(i, 7, "$ORIGIN") == 0) out += origin, i += 7;
    else if (dir.compare(i, 9, "${ORIGIN}") == 0) out += origin, i += 9;
    else if (dir[i] == '$') return "";
    else out += dir[i++];
  }
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

struct Object {
  std::string path;  // as found (its directory is $ORIGIN)
  ProgramInfo info;
  bool required = true;  // a missing library fails the packing (the program's own, and theirs)
};

}  // namespace

namespace {

// One ld.so.conf file: its directories in order, an include's files in
// place of the include (as ldconfig reads them), at most 8 levels deep.
void read_conf(const std::string& file, int depth, std::set<std::string>* seen, std::vector<std::string>* dirs) {
  if (depth > 8 || !seen->insert(file).second) return;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    line = line.substr(0, line.find('#'));
    for (char& c : line)
      if (c == ',' || c == '\t') c = ' ';
    std::istringstream words(line);
    std::string w;
    if (!(words >> w)) continue;
    if (w == "include") {
      while (words >> w) {
        const std::string pattern = w[0] == '/' ? w : dir_of(file) + "/" + w;
        glob_t g{};
        if (::glob(pattern.c_str(), 0, nullptr, &g) == 0)
          for (size_t i = 0; i < g.gl_pathc; i++) read_conf(g.gl_pathv[i], depth + 1, seen, dirs);
        ::globfree(&g);
      }
      continue;
    }
    do {
      if (w[0] == '/' && std::find(dirs->begin(), dirs->end(), w) == dirs->end()) dirs->push_back(w);
    } while (words >> w);
  }
}

}  // namespace

std::vector<std::string> ld_so_conf_dirs(const std::string& conf) {
  std::vector<std::string> dirs;
  std::set<std::string> seen;
  read_conf(conf, 0, &seen, &dirs);
  return dirs;
}

Result<std::vector<Dependency>> program_dependencies(const std::string& program_path, const ProgramInfo& info,
                                                     const std::vector<Module>& modules) {
  std::vector<Dependency> deps;
  if (info.interpreter.empty()) return deps;
  if (!regular_file(info.interpreter))
    return Error{"its loader " + info.interpreter + " is not on this host (install the libc it was built for)"};
  deps.push_back(Dependency{info.interpreter, info.interpreter});
  std::set<std::string> packed_real = {real_path(info.interpreter)};  // each host file once
  std::set<std::string> resolved;                                     // DT_NEEDED names done
  const std::vector<std::string> conf = ld_so_conf_dirs();
  std::deque<Object> todo = {Object{program_path, info, true}};
  for (const Module& m : modules) todo.push_back(Object{m.host_path, m.info, false});
  while (!todo.empty()) {
    const Object obj = std::move(todo.front());
    todo.pop_front();
    const std::string origin = dir_of(real_path(obj.path));
    for (const std::string& name : obj.info.needed) {
      if (!resolved.insert(name).second) continue;
      // Where ld.so looks, in its order, each directory with the reason the
      // guest will look there too (or not).
      std::vector<std::pair<std::string, bool>> dirs;  // directory, the guest's ld.so searches it
      if (name.find('/') != std::string::npos) {
        dirs.emplace_back("", true);
      } else {
        // A directory named through $ORIGIN is where the object is on this
        // host, not in the guest (the program is at its guest path there):
        // what is found through it goes to a standard directory.
        auto search = [&](const std::string& d, const std::string& from) {
          dirs.emplace_back(expand(d, from), d.find('$') == std::string::npos);
        };
        if (obj.info.runpath.empty()) {
          for (const std::string& d : obj.info.rpath) search(d, origin);
          if (obj.path != program_path)
            for (const std::string& d : info.rpath) search(d, dir_of(real_path(program_path)));
        }
        for (const std::string& d : obj.info.runpath) search(d, origin);
        for (const std::string& d : conf)
          dirs.emplace_back(d, std::find(kStandardDirs.begin(), kStandardDirs.end(), d) != kStandardDirs.end());
        for (const std::string& d : kStandardDirs) dirs.emplace_back(d, true);
      }
      bool found = false;
      for (const auto& [dir, guest_looks] : dirs) {
        if (dir.empty() && name.find('/') == std::string::npos) continue;  // an entry ld.so would not use
        const std::string path = dir.empty() ? name : dir + "/" + name;
        if (!regular_file(path)) continue;
        auto bytes = read_whole_file(path);
        if (!bytes) continue;
        auto lib = inspect_library(bytes->data(), bytes->size());
        if (!lib) continue;  // another class or machine, or not a library: ld.so skips it too
        found = true;
        if (!packed_real.insert(real_path(path)).second) break;  // e.g. ld.so itself, asked for by libc
        if (deps.size() == kMaxLibraries) return Error{"needs more than " + std::to_string(kMaxLibraries) + " libraries"};
        deps.push_back(Dependency{path, guest_looks || dir.empty() ? path : kStandardDirs[0] + "/" + name});
        todo.push_back(Object{path, std::move(*lib), obj.required});
        break;
      }
      if (!found && !obj.required) {
        resolved.erase(name);  // if a required object needs it too, that one reports it
        continue;
      }
      if (!found)
        return Error{"needs " + name + " (asked for by " + obj.path +
                     "), which is not on this host: not in its RPATH/RUNPATH, /etc/ld.so.conf or the standard directories"};
    }
  }
  return deps;
}

}  // namespace ember::image
