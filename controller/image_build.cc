#include "controller/image_build.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "base/fd.h"
#include "controller/fsutil.h"
#include "images/image_reader.h"
#include "images/image_writer.h"
#include "images/program_check.h"

namespace ember::controller {

BodyKind detect_body(const std::string& body) {
  if (body.size() >= 4 && std::memcmp(body.data(), "\x7f" "ELF", 4) == 0) return BodyKind::kElf;
  if (body.size() >= sizeof abi::kImageMagic && std::memcmp(body.data(), abi::kImageMagic, sizeof abi::kImageMagic) == 0)
    return BodyKind::kImage;
  return BodyKind::kUnknown;
}

namespace {

Result<void> write_plain(const std::string& path, const char* data, size_t size, uint32_t mode) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (!fd.valid()) return errno_error("create " + path);
  size_t off = 0;
  while (off < size) {
    const ssize_t w = ::write(fd.get(), data + off, size - off);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return errno_error("write " + path);
    off += static_cast<size_t>(w);
  }
  return Ok();
}

std::string as_string(image::Bytes b) { return std::string(b.data, b.size); }

Result<uint64_t> file_size(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) < 0) return errno_error("stat " + path);
  return static_cast<uint64_t>(st.st_size);
}

Result<BuiltImage> build(const std::string& name, const std::string& body, const FunctionSpec& spec,
                         const std::string& work_dir, const std::string& out_path) {
  BuiltImage built;
  image::ImageSpec is;
  switch (detect_body(body)) {
    case BodyKind::kElf: {
      built.source = "elf";
      // A dynamic program is packed with its loader and libraries, from
      // this host (image_writer.h).
      if (auto ok = image::inspect_program(reinterpret_cast<const uint8_t*>(body.data()), body.size()); !ok)
        return Error{"the program " + ok.message()};
      const std::string prog = work_dir + "/program";
      EMBER_TRY_VOID(write_plain(prog, body.data(), body.size(), 0755));
      is.exec_host_path = prog;
      is.exec_guest_path = "/bin/" + name;
      if (!spec.args.empty()) {
        is.args.push_back(is.exec_guest_path);
        is.args.insert(is.args.end(), spec.args.begin(), spec.args.end());
      }
      is.env = spec.env;
      break;
    }
    case BodyKind::kImage: {
      built.source = "image";
      image::ImageReader r;
      const auto st = r.open(reinterpret_cast<const uint8_t*>(body.data()), body.size());
      if (st != image::ImageStatus::kOk) return Error{std::string("the Ember image is invalid: ") + image::image_status_text(st)};
      const image::ImageFile exec = r.file(r.exec_index());
      if (auto ok = image::inspect_program(exec.data, exec.size); !ok)
        return Error{"the image's program " + as_string(exec.path) + " " + ok.message()};
      is.with_dependencies = false;  // an image carries its own
      if (spec.args.empty() && spec.env.empty()) {
        EMBER_TRY_VOID(write_file_atomic(out_path, body));
        built.bytes = body.size();
        return built;
      }
      // Repack with the deploy's argv/env: every file comes back out with its
      // mode, the program first.
      for (uint32_t i = 0; i < r.file_count(); i++) {
        const image::ImageFile f = r.file(i);
        const std::string host = work_dir + "/f" + std::to_string(i);
        EMBER_TRY_VOID(write_plain(host, reinterpret_cast<const char*>(f.data), f.size,
                                   (f.mode & 0111) ? 0755 : 0644));
        if (i == r.exec_index()) {
          is.exec_host_path = host;
          is.exec_guest_path = as_string(f.path);
        } else {
          is.files.emplace_back(host, as_string(f.path));
        }
      }
      if (!spec.args.empty()) {
        is.args.push_back(r.arg_count() > 0 ? as_string(r.arg(0)) : is.exec_guest_path);
        is.args.insert(is.args.end(), spec.args.begin(), spec.args.end());
      } else {
        for (uint32_t i = 0; i < r.arg_count(); i++) is.args.push_back(as_string(r.arg(i)));
      }
      for (uint32_t i = 0; i < r.env_count(); i++) is.env.push_back(as_string(r.env(i)));
      for (const auto& kv : spec.env) {
        const std::string key = kv.substr(0, kv.find('=') + 1);
        bool replaced = false;
        for (auto& e : is.env)
          if (e.compare(0, key.size(), key) == 0) e = kv, replaced = true;
        if (!replaced) is.env.push_back(kv);
      }
      break;
    }
    case BodyKind::kUnknown:
      return Error{"the body is neither a static ELF executable nor an Ember image (see images/FORMAT.md)"};
  }
  if (auto w = image::write_image_file(out_path, is); !w) return Error{"cannot build the image: " + w.message()};
  EMBER_TRY(built.bytes, file_size(out_path));
  return built;
}

}  // namespace

Result<BuiltImage> build_function_image(const std::string& name, const std::string& body, const FunctionSpec& spec,
                                        const std::string& work_dir, const std::string& out_path) {
  EMBER_TRY_VOID(make_dirs(work_dir, 0700));
  auto r = build(name, body, spec, work_dir, out_path);
  remove_tree(work_dir);
  return r;
}

}  // namespace ember::controller
