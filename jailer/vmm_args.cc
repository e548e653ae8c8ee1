#include "jailer/vmm_args.h"

#include <algorithm>

#include "jailer/paths.h"
#include "vmm/cli.h"

namespace ember::jail {

const std::vector<std::string>& vmm_value_options() {
  static const std::vector<std::string> v = {"--kernel", "--mem-mib", "--timeout-ms", "--env",
                                             "--image",  "--cmdline", "--id", "--vsock-uds", "--snapshot-at-ready"};
  return v;
}

const std::vector<std::string>& vmm_flag_options() {
  static const std::vector<std::string> v = {"-v", "--verbose", "--no-seccomp", "-h", "--help"};
  return v;
}

Result<VmmInvocation> rewrite_vmm_args(const std::vector<std::string>& in, const std::string& id,
                                       const std::string& default_kernel, const std::vector<std::string>& reserved) {
  if (in.empty() || in[0] != "run")
    return Error{"the VMM arguments after -- must start with `run` (ember-jailer runs `ember-vmm run ...`)"};
  VmmInvocation out;
  out.args = {"run", "--id", id};
  std::vector<std::string> taken = reserved;
  auto bring = [&](JailFile::Role role, const std::string& path) -> Result<std::string> {
    if (path.empty()) return Error{"empty path in the VMM arguments"};
    const std::string name = basename_of(path);
    if (name.empty() || name == "." || name == "..")
      return Error{"VMM argument " + path + ": not a file name"};
    if (std::find(taken.begin(), taken.end(), name) != taken.end())
      return Error{"VMM argument " + path + ": its name '" + name +
                   "' is already taken in the jail (each file keeps its base name there): rename it"};
    taken.push_back(name);
    out.files.push_back(JailFile{role, path, name});
    return "/" + name;
  };

  size_t i = 1;
  bool kernel_given = false;
  bool image_given = false;
  std::vector<std::string> options;
  for (; i < in.size(); i++) {
    const std::string& a = in[i];
    if (a == "--") break;
    if (a.size() < 2 || a[0] != '-') break;  // PROGRAM
    std::string name = a, inline_value;
    bool has_inline = false;
    if (a.rfind("--", 0) == 0 && a.find('=') != std::string::npos) {
      name = a.substr(0, a.find('='));
      inline_value = a.substr(a.find('=') + 1);
      has_inline = true;
    }
    const auto& vals = vmm_value_options();
    const auto& flags = vmm_flag_options();
    if (std::find(flags.begin(), flags.end(), name) != flags.end()) {
      options.push_back(a);
      continue;
    }
    if (std::find(vals.begin(), vals.end(), name) == vals.end())
      return Error{"VMM argument '" + a + "': an option ember-jailer does not know (see `ember-vmm run --help`)"};
    std::string v;
    if (has_inline) {
      v = inline_value;
    } else {
      if (i + 1 >= in.size()) return Error{"VMM argument " + name + " needs a value"};
      v = in[++i];
    }
    if (name == "--id") return Error{"VMM argument --id: ember-jailer passes the jail's own --id"};
    // Paths the VMM creates (a socket, a snapshot directory) would have to
    // be placed in the jail and handed back out: not done yet.
    if (name == "--vsock-uds" || name == "--snapshot-at-ready")
      return Error{"VMM argument " + name + ": not supported through ember-jailer yet"};
    if (name == "--kernel") {
      EMBER_TRY(v, bring(JailFile::Role::kKernel, v));
      kernel_given = true;
    } else if (name == "--image") {
      EMBER_TRY(v, bring(JailFile::Role::kImage, v));
      image_given = true;
    }
    options.push_back(name);
    options.push_back(v);
  }
  if (!kernel_given) {
    EMBER_TRY(std::string k, bring(JailFile::Role::kKernel, default_kernel));
    out.args.push_back("--kernel");
    out.args.push_back(k);
  }
  out.args.insert(out.args.end(), options.begin(), options.end());
  if (!image_given) {
    if (i < in.size() && in[i] == "--") i++;
    if (i >= in.size()) return Error{"VMM arguments: missing PROGRAM or --image IMG"};
    EMBER_TRY(std::string p, bring(JailFile::Role::kProgram, in[i]));
    out.args.push_back(p);
    i++;
  }
  out.args.insert(out.args.end(), in.begin() + static_cast<std::ptrdiff_t>(i), in.end());

  // What ember-vmm will make of it: the same parser, so that a usage error
  // shows up before any jail is built.
  auto parsed = parse_cli(out.args);
  if (!parsed) return Error{"VMM arguments: " + parsed.message()};
  return out;
}

}  // namespace ember::jail
