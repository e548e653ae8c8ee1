// ember-image: packs a static program, its files, argv and env into an Ember
// function image, and inspects images. Exit status: 0 ok, 1 failure (bad
// input file, malformed image), 2 usage error.
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "images/image_reader.h"
#include "images/image_writer.h"

namespace {

using ember::image::ImageReader;
using ember::image::ImageSpec;
using ember::image::parse_host_guest;
using ember::image::ImageStatus;

constexpr const char* kToolHelp =
    "usage: ember-image COMMAND [OPTIONS]\n"
    "\n"
    "Builds and reads Ember function images: one file holding a Linux x86-64\n"
    "program (static, or dynamic with its loader and libraries), the files it\n"
    "reads, and its argv/env (format: images/FORMAT.md).\n"
    "\n"
    "commands:\n"
    "  pack      build an image from a program and files\n"
    "  inspect   print an image's contents, after validating it\n"
    "\n"
    "Run `ember-image COMMAND --help` for the options of a command.\n"
    "\n"
    "example:\n"
    "  ember-image pack -o hello.img --exec ./hello --arg hello --arg world\n"
    "  ember-image inspect hello.img\n";

constexpr const char* kPackHelp =
    "usage: ember-image pack -o OUT.img --exec PROGRAM [--exec-path GUESTPATH]\n"
    "                        [--file HOST:GUEST]... [--tree HOST_DIR:GUEST_DIR]...\n"
    "                        [--arg A]... [--env K=V]... [--no-deps]\n"
    "\n"
    "Builds OUT.img (written to a temporary file, fsynced, then renamed).\n"
    "\n"
    "  -o, --output OUT.img   the image to write\n"
    "  --exec PROGRAM         the ELF program to run (host path): static, or dynamic,\n"
    "                         which brings its loader and every library it needs,\n"
    "                         found as this host's ld.so finds them and packed where\n"
    "                         the guest's ld.so looks (ember-image inspect lists them)\n"
    "  --no-deps              pack a dynamic program without them (the --file\n"
    "                         options must then carry its loader and libraries)\n"
    "  --exec-path GUESTPATH  where the guest sees the program (default /bin/BASENAME)\n"
    "  --file HOST:GUEST      add host file HOST at absolute guest path GUEST;\n"
    "                         --file /abs/path alone uses the same path in the guest\n"
    "  --tree HOST_DIR:GUEST_DIR  add every regular file below HOST_DIR under\n"
    "                         GUEST_DIR (symlinks to files followed; a path a --file\n"
    "                         or an earlier --tree filled stays as it was)\n"
    "  --arg A                append A to argv; the first --arg is argv[0]\n"
    "                         (default argv: just the program's guest path)\n"
    "  --env K=V              append K=V to the environment\n"
    "\n"
    "Guest paths are normalised (\"//\" and \".\" removed); \"..\" and duplicates are\n"
    "rejected. Files keep their host x bits (mode 0755 or 0644).\n"
    "\n"
    "example:\n"
    "  ember-image pack -o cat.img --exec ./cat --file data/in.txt:/data/in.txt \\\n"
    "      --arg cat --arg /data/in.txt --env LANG=C\n"
    "  ember-image pack -o sqlite.img --exec /usr/bin/sqlite3 --arg sqlite3 --arg :memory:\n"
    "  ember-image pack -o py.img --exec /usr/bin/python3 --tree /usr/lib/python3.11 \\\n"
    "      --arg python3 --arg -c --arg 'import json; print(json.dumps([1]))'\n";

constexpr const char* kInspectHelp =
    "usage: ember-image inspect IMAGE\n"
    "\n"
    "Validates IMAGE exactly as the guest does and prints its version, program,\n"
    "argv, env and a table of files (mode in octal, size and data offset in\n"
    "bytes). A malformed image prints one error line and exits 1.\n"
    "\n"
    "example:\n"
    "  ember-image inspect hello.img\n";

int usage_error(const std::string& msg, const char* help_cmd) {
  std::fprintf(stderr, "ember-image: %s\n", msg.c_str());
  std::fprintf(stderr, "Run `ember-image %s--help` for usage.\n", help_cmd);
  return 2;
}

bool is_help(const std::string& a) { return a == "--help" || a == "-h"; }

// Printable form of an image string: control bytes and '\\' escaped.
std::string printable(const char* s, uint32_t n) {
  std::string out;
  for (uint32_t i = 0; i < n; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '\\') {
      out += "\\\\";
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += char(c);
    }
  }
  return out;
}

int cmd_pack(int argc, char** argv) {
  ImageSpec spec;
  std::string out;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (is_help(a)) {
      std::fputs(kPackHelp, stdout);
      return 0;
    }
    // Accept both "--opt VALUE" and "--opt=VALUE".
    std::string value;
    bool inline_value = false;
    if (a.rfind("--", 0) == 0) {
      size_t eq = a.find('=');
      if (eq != std::string::npos) {
        value = a.substr(eq + 1);
        a = a.substr(0, eq);
        inline_value = true;
      }
    }
    auto take = [&](std::string* dst) -> bool {
      if (inline_value) {
        *dst = value;
        return true;
      }
      if (i + 1 >= argc) return false;
      *dst = argv[++i];
      return true;
    };
    std::string v;
    if (a == "-o" || a == "--output") {
      if (!take(&out)) return usage_error(a + " needs a file name", "pack ");
    } else if (a == "--exec") {
      if (!take(&spec.exec_host_path)) return usage_error("--exec needs a program", "pack ");
    } else if (a == "--no-deps") {
      if (inline_value) return usage_error("--no-deps takes no value", "pack ");
      spec.with_dependencies = false;
    } else if (a == "--exec-path") {
      if (!take(&spec.exec_guest_path)) return usage_error("--exec-path needs a guest path", "pack ");
    } else if (a == "--file" || a == "--tree") {
      if (!take(&v)) return usage_error(a + " needs HOST:GUEST", "pack ");
      auto hg = parse_host_guest(v);
      if (!hg) return usage_error(a + " " + hg.message(), "pack ");
      (a == "--file" ? spec.files : spec.trees).push_back(*hg);
    } else if (a == "--arg") {
      if (!take(&v)) return usage_error("--arg needs a value", "pack ");
      spec.args.push_back(v);
    } else if (a == "--env") {
      if (!take(&v)) return usage_error("--env needs KEY=VALUE", "pack ");
      if (v.find('=') == std::string::npos || v[0] == '=') {
        return usage_error("--env '" + v + "': expected KEY=VALUE", "pack ");
      }
      spec.env.push_back(v);
    } else {
      return usage_error("pack: unknown argument '" + a + "'", "pack ");
    }
  }
  if (out.empty()) return usage_error("pack: no output given (-o OUT.img)", "pack ");
  if (spec.exec_host_path.empty()) return usage_error("pack: no program given (--exec PROGRAM)", "pack ");
  auto r = ember::image::write_image_file(out, spec);
  if (!r) {
    std::fprintf(stderr, "ember-image: %s\n", r.message().c_str());
    return 1;
  }
  return 0;
}

int cmd_inspect(int argc, char** argv) {
  std::string path;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (is_help(a)) {
      std::fputs(kInspectHelp, stdout);
      return 0;
    }
    if (!path.empty() || (a.size() > 1 && a[0] == '-')) {
      return usage_error("inspect: unexpected argument '" + a + "'", "inspect ");
    }
    path = a;
  }
  if (path.empty()) return usage_error("inspect: no image given", "inspect ");
  auto bytes = ember::image::read_whole_file(path);
  if (!bytes) {
    std::fprintf(stderr, "ember-image: %s\n", bytes.message().c_str());
    return 1;
  }
  ImageReader reader;
  ImageStatus st = reader.open(bytes->data(), bytes->size());
  if (st != ImageStatus::kOk) {
    std::fprintf(stderr, "ember-image: %s: %s\n", path.c_str(), ember::image::image_status_text(st));
    return 1;
  }
  auto exec = reader.file(reader.exec_index());
  std::printf("image:   %s (%zu bytes, version %u)\n", path.c_str(), bytes->size(), ember::abi::kImageVersion);
  std::printf("exec:    %s (file %u)\n", printable(exec.path.data, exec.path.size).c_str(), reader.exec_index());
  std::printf("args:    %u\n", reader.arg_count());
  for (uint32_t i = 0; i < reader.arg_count(); ++i) {
    auto a = reader.arg(i);
    std::printf("  argv[%u] = %s\n", i, printable(a.data, a.size).c_str());
  }
  std::printf("env:     %u\n", reader.env_count());
  for (uint32_t i = 0; i < reader.env_count(); ++i) {
    auto e = reader.env(i);
    std::printf("  %s\n", printable(e.data, e.size).c_str());
  }
  std::printf("files:   %u\n", reader.file_count());
  std::printf("  %-7s %12s %12s  %s\n", "MODE", "SIZE", "OFFSET", "PATH");
  for (uint32_t i = 0; i < reader.file_count(); ++i) {
    auto f = reader.file(i);
    std::printf("  %07o %12" PRIu64 " %12" PRIu64 "  %s\n", f.mode, f.size,
                uint64_t(f.data - bytes->data()), printable(f.path.data, f.path.size).c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage_error("no command given", "");
  std::string cmd = argv[1];
  if (is_help(cmd) || cmd == "help") {
    std::fputs(kToolHelp, stdout);
    return 0;
  }
  if (cmd == "pack") return cmd_pack(argc - 2, argv + 2);
  if (cmd == "inspect") return cmd_inspect(argc - 2, argv + 2);
  return usage_error("unknown command '" + cmd + "'", "");
}
