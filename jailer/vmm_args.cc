#include "jailer/vmm_args.h"

#include <algorithm>

#include "jailer/paths.h"
#include "vmm/cli.h"

namespace ember::jail {

const std::vector<std::string>& vmm_value_options() {
  static const std::vector<std::string> v = {"--kernel", "--mem-mib", "--timeout-ms", "--env",  "--image",
                                             "--cmdline", "--id", "--vsock-uds", "--snapshot-at-ready", "--file",
                                             "--tree"};
  return v;
}

const std::vector<std::string>& vmm_flag_options() {
  static const std::vector<std::string> v = {"-v",        "--verbose",
                                             "--no-seccomp", "--die-with-parent",
                                             "--program-stderr-on-stdout", "--huge-pages",
                                             "-h",        "--help"};
  return v;
}

const std::vector<std::string>& vmm_restore_value_options() {
  static const std::vector<std::string> v = {"--vsock-uds", "--repeat", "--timeout-ms", "--id"};
  return v;
}

const std::vector<std::string>& vmm_restore_flag_options() {
  static const std::vector<std::string> v = {"-v", "--verbose", "--no-seccomp", "--die-with-parent", "-h", "--help"};
  return v;
}

namespace {

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

Result<std::string> base_name(const std::string& path) {
  if (path.empty()) return Error{"empty path in the VMM arguments"};
  const std::string name = basename_of(path);
  if (name.empty() || name == "." || name == "..") return Error{"VMM argument " + path + ": not a file name"};
  return name;
}

}  // namespace

Result<VmmInvocation> rewrite_vmm_args(const std::vector<std::string>& in, const std::string& id,
                                       const std::string& default_kernel, const std::vector<std::string>& reserved) {
  if (in.empty() || (in[0] != "run" && in[0] != "restore"))
    return Error{"the VMM arguments after -- must start with `run` or `restore` (ember-jailer runs `ember-vmm run "
                 "...` or `ember-vmm restore ...`)"};
  const bool restore = in[0] == "restore";
  VmmInvocation out;
  out.args = {in[0], "--id", id};
  std::vector<std::string> taken = reserved;  // names in the jail's root
  // A file or directory the VM reads, brought into the jail's root.
  auto bring = [&](JailFile::Role role, const std::string& path) -> Result<std::string> {
    EMBER_TRY(std::string name, base_name(path));
    if (contains(taken, name))
      return Error{"VMM argument " + path + ": its name '" + name +
                   "' is already taken in the jail (each file keeps its base name there): rename it"};
    taken.push_back(name);
    out.files.push_back(JailFile{role, path, name});
    return "/" + name;
  };
  // Something the VMM creates: in the jail's /run.
  auto create = [&](const std::string& option, const std::string& path) -> Result<std::string> {
    EMBER_TRY(std::string name, base_name(path));
    if (contains(out.outputs, name))
      return Error{"VMM argument " + option + " " + path + ": its name '" + name +
                   "' is already taken in the jail's /" + kJailRunDir + ": rename it"};
    out.outputs.push_back(name);
    return "/" + std::string(kJailRunDir) + "/" + name;
  };

  const auto& vals = restore ? vmm_restore_value_options() : vmm_value_options();
  const auto& flags = restore ? vmm_restore_flag_options() : vmm_flag_options();
  const std::string command_help = "`ember-vmm " + in[0] + " --help`";
  size_t i = 1;
  bool kernel_given = false;
  bool image_given = false;
  std::vector<std::string> options;
  for (; i < in.size(); i++) {
    const std::string& a = in[i];
    if (a == "--") break;
    if (a.size() < 2 || a[0] != '-') break;  // PROGRAM or DIR
    std::string name = a, inline_value;
    bool has_inline = false;
    if (a.rfind("--", 0) == 0 && a.find('=') != std::string::npos) {
      name = a.substr(0, a.find('='));
      inline_value = a.substr(a.find('=') + 1);
      has_inline = true;
    }
    if (contains(flags, name)) {
      options.push_back(a);
      continue;
    }
    if (!contains(vals, name))
      return Error{"VMM argument '" + a + "': an option ember-jailer does not know (see " + command_help + ")"};
    std::string v;
    if (has_inline) {
      v = inline_value;
    } else {
      if (i + 1 >= in.size()) return Error{"VMM argument " + name + " needs a value"};
      v = in[++i];
    }
    if (name == "--id") return Error{"VMM argument --id: ember-jailer passes the jail's own --id"};
    if (name == "--file" || name == "--tree")
      return Error{"VMM argument " + name + ": a jailed VM reads only what ember-jailer brings into its root; pack the "
                   "files into an image (ember-image pack " + name + " ...) and pass --image"};
    if (name == "--vsock-uds" || name == "--snapshot-at-ready") {
      EMBER_TRY(v, create(name, v));
    } else if (name == "--kernel") {
      EMBER_TRY(v, bring(JailFile::Role::kKernel, v));
      kernel_given = true;
    } else if (name == "--image") {
      EMBER_TRY(v, bring(JailFile::Role::kImage, v));
      image_given = true;
    }
    options.push_back(name);
    options.push_back(v);
  }
  if (!restore && !kernel_given) {  // a snapshot carries its guest; a boot needs the kernel
    EMBER_TRY(std::string k, bring(JailFile::Role::kKernel, default_kernel));
    out.args.push_back("--kernel");
    out.args.push_back(k);
  }
  out.args.insert(out.args.end(), options.begin(), options.end());
  if (restore) {
    if (i < in.size() && in[i] == "--") i++;
    if (i >= in.size()) return Error{"VMM arguments: missing the snapshot directory DIR of `restore`"};
    EMBER_TRY(std::string d, bring(JailFile::Role::kSnapshot, in[i]));
    out.args.push_back(d);
    i++;
  } else if (!image_given) {
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
