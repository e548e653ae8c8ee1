#include "images/image_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <filesystem>

#include "api/image_format.h"
#include "base/fd.h"
#include "images/image_reader.h"
#include "images/program_check.h"
#include "images/shared_libs.h"

namespace ember::image {
namespace {

using abi::FileEntry;
using abi::ImageHeader;
using abi::StringRef;

struct Input {
  std::string host_path;
  std::string guest_path;
  uint32_t mode;
  std::vector<uint8_t> data;
};

void put32(std::vector<uint8_t>& out, uint64_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) out[at + i] = uint8_t(v >> (8 * i));
}

void put64(std::vector<uint8_t>& out, uint64_t at, uint64_t v) {
  for (int i = 0; i < 8; ++i) out[at + i] = uint8_t(v >> (8 * i));
}

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

std::string basename_of(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  size_t slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

// A regular file, read whole; mode: executable if any x bit is set on the host.
Result<Input> read_input(const std::string& host_path, const std::string& guest_path, bool exec) {
  Fd fd(::open(host_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return errno_error("cannot open " + host_path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return errno_error("cannot stat " + host_path);
  if (!S_ISREG(st.st_mode)) return Error{host_path + ": not a regular file"};
  Input in{host_path, guest_path, 0, {}};
  in.data.resize(size_t(st.st_size));
  size_t done = 0;
  while (done < in.data.size()) {
    ssize_t n = ::read(fd.get(), in.data.data() + done, in.data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("cannot read " + host_path);
    if (n == 0) return Error{host_path + ": file shrank while being read"};
    done += size_t(n);
  }
  in.mode = (exec || (st.st_mode & 0111)) ? abi::kFileModeExec : abi::kFileModeRegular;
  return in;
}

// Every regular file below host_dir, in name order, at guest_dir + its
// relative path, unless that guest path is taken.
Result<void> add_tree(const std::string& host_dir, const std::string& guest_dir, std::vector<Input>* inputs) {
  namespace fs = std::filesystem;
  auto root = normalize_guest_path(guest_dir);
  if (!root) return Error{"tree " + host_dir + ": " + root.message()};
  std::error_code ec;
  if (!fs::is_directory(host_dir, ec)) return Error{"tree " + host_dir + ": not a directory"};
  std::vector<std::pair<std::string, std::string>> found;  // guest, host
  fs::recursive_directory_iterator it(host_dir, fs::directory_options::none, ec), end;
  if (ec) return Error{"tree " + host_dir + ": " + ec.message()};
  for (; it != end; it.increment(ec)) {
    if (ec) return Error{"tree " + host_dir + ": " + ec.message()};
    if (!it->is_regular_file(ec)) continue;  // follows a symlink; directories, devices, sockets: no
    // Lexically: a symlink inside the tree stays where it is in the tree.
    const std::string rel = it->path().lexically_relative(host_dir).generic_string();
    if (rel.empty() || rel.rfind("..", 0) == 0) continue;
    found.emplace_back(*root + "/" + rel, it->path().string());
  }
  std::sort(found.begin(), found.end());
  for (const auto& [guest_raw, host] : found) {
    auto guest = normalize_guest_path(guest_raw);
    if (!guest) return Error{"tree " + host_dir + ": " + guest.message()};
    if (std::any_of(inputs->begin(), inputs->end(), [&](const Input& in) { return in.guest_path == *guest; })) continue;
    if (inputs->size() == abi::kImageMaxFiles)
      return Error{"tree " + host_dir + ": more than " + std::to_string(abi::kImageMaxFiles) + " files in the image"};
    EMBER_TRY(Input in, read_input(host, *guest, false));
    inputs->push_back(std::move(in));
  }
  return Ok();
}

Result<void> check_string(const std::string& s, const char* what) {
  if (s.find('\0') != std::string::npos) return Error{std::string(what) + " contains a NUL byte"};
  if (s.size() > UINT32_MAX - 1) return Error{std::string(what) + " is too long"};
  return Ok();
}

}  // namespace

Result<std::string> normalize_guest_path(const std::string& path) {
  if (path.empty() || path[0] != '/') return Error{"guest path '" + path + "' is not absolute"};
  if (path.find('\0') != std::string::npos) return Error{"guest path contains a NUL byte"};
  std::string out;
  size_t i = 0;
  while (i < path.size()) {
    while (i < path.size() && path[i] == '/') ++i;
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    std::string comp = path.substr(i, j - i);
    i = j;
    if (comp.empty() || comp == ".") continue;
    if (comp == "..") return Error{"guest path '" + path + "' contains '..'"};
    out += '/';
    out += comp;
  }
  if (out.empty()) return Error{"guest path '" + path + "' names the root directory, not a file"};
  if (out.size() > abi::kImagePathMax) {
    return Error{"guest path '" + path.substr(0, 64) + "...' is longer than " +
                 std::to_string(abi::kImagePathMax) + " bytes"};
  }
  return out;
}

Result<std::pair<std::string, std::string>> parse_host_guest(const std::string& v) {
  const size_t colon = v.find(":/");
  if (colon != std::string::npos && colon > 0) return std::make_pair(v.substr(0, colon), v.substr(colon + 1));
  if (!v.empty() && v[0] == '/' && v.find(':') == std::string::npos) return std::make_pair(v, v);
  return Error{"'" + v + "': expected HOST:GUEST with an absolute GUEST path"};
}

Result<std::vector<uint8_t>> build_image(const ImageSpec& spec) {
  if (spec.exec_host_path.empty()) return Error{"no program given (exec host path is empty)"};
  std::string exec_guest = spec.exec_guest_path.empty() ? "/bin/" + basename_of(spec.exec_host_path)
                                                        : spec.exec_guest_path;
  if (1 + spec.files.size() > abi::kImageMaxFiles) {
    return Error{"too many files: " + std::to_string(1 + spec.files.size()) + " (at most " +
                 std::to_string(abi::kImageMaxFiles) + ")"};
  }
  std::vector<std::string> args = spec.args;
  if (args.empty()) args.push_back("");  // argv[0] filled below, once the path is normalised
  if (args.size() > abi::kImageMaxStrings) {
    return Error{"too many args: " + std::to_string(args.size()) + " (at most " +
                 std::to_string(abi::kImageMaxStrings) + ")"};
  }
  if (spec.env.size() > abi::kImageMaxStrings) {
    return Error{"too many env entries: " + std::to_string(spec.env.size()) + " (at most " +
                 std::to_string(abi::kImageMaxStrings) + ")"};
  }
  for (const std::string& a : args) EMBER_TRY_VOID(check_string(a, ("argument '" + a + "'").c_str()));
  for (const std::string& e : spec.env) {
    EMBER_TRY_VOID(check_string(e, ("env entry '" + e + "'").c_str()));
    size_t eq = e.find('=');
    if (eq == std::string::npos || eq == 0) return Error{"env entry '" + e + "' is not KEY=VALUE"};
  }

  // The program first: the writer always puts it at index 0.
  std::vector<Input> inputs;
  ProgramInfo exec_info;
  {
    auto guest = normalize_guest_path(exec_guest);
    if (!guest) return Error{"program " + spec.exec_host_path + ": " + guest.message()};
    EMBER_TRY(Input in, read_input(spec.exec_host_path, *guest, true));
    auto info = inspect_program(in.data.data(), in.data.size());
    if (!info) return Error{"program " + spec.exec_host_path + " " + info.message()};
    if (spec.args.empty()) args[0] = in.guest_path;
    inputs.push_back(std::move(in));
    exec_info = std::move(*info);
  }
  for (const auto& [host, guest_raw] : spec.files) {
    auto guest = normalize_guest_path(guest_raw);
    if (!guest) return Error{"file " + host + ": " + guest.message()};
    for (const Input& prev : inputs) {
      if (prev.guest_path == *guest) {
        return Error{"duplicate guest path " + *guest + " (from " + prev.host_path + " and " + host + ")"};
      }
    }
    EMBER_TRY(Input in, read_input(host, *guest, false));
    inputs.push_back(std::move(in));
  }
  for (const auto& [host_dir, guest_dir] : spec.trees) EMBER_TRY_VOID(add_tree(host_dir, guest_dir, &inputs));
  if (spec.with_dependencies && !exec_info.interpreter.empty()) {
    // The shared objects packed beside a dynamic program (extension modules
    // and the like) bring their libraries too.
    std::vector<Module> modules;
    for (size_t i = 1; i < inputs.size(); i++) {
      const Input& in = inputs[i];
      if (in.data.size() < 4 || std::memcmp(in.data.data(), "\177ELF", 4) != 0) continue;
      if (auto lib = inspect_library(in.data.data(), in.data.size()); lib && !lib->needed.empty())
        modules.push_back(Module{in.host_path, std::move(*lib)});
    }
    auto deps = program_dependencies(spec.exec_host_path, exec_info, modules);
    if (!deps) return Error{"program " + spec.exec_host_path + " " + deps.message() + " (or pack with --no-deps)"};
    for (const Dependency& d : *deps) {
      // What the program, a file or a tree already put there stays.
      if (std::any_of(inputs.begin(), inputs.end(), [&](const Input& in) { return in.guest_path == d.guest_path; }))
        continue;
      EMBER_TRY(Input lib, read_input(d.host_path, d.guest_path, false));
      inputs.push_back(std::move(lib));
    }
  }
  if (inputs.size() > abi::kImageMaxFiles) {
    return Error{"too many files: " + std::to_string(inputs.size()) + " (at most " + std::to_string(abi::kImageMaxFiles) + ")"};
  }

  // Strings: paths, then args, then env; each followed by a NUL.
  std::vector<uint8_t> strings;
  std::vector<StringRef> refs;
  auto add_string = [&](const std::string& s) {
    refs.push_back(StringRef{uint32_t(strings.size()), uint32_t(s.size())});
    strings.insert(strings.end(), s.begin(), s.end());
    strings.push_back(0);
  };
  for (const Input& in : inputs) add_string(in.guest_path);
  for (const std::string& a : args) add_string(a);
  for (const std::string& e : spec.env) add_string(e);
  if (strings.size() > UINT32_MAX) return Error{"strings (paths, args, env) exceed 4 GiB"};

  const uint64_t table_offset = sizeof(ImageHeader);
  const uint64_t table_size = inputs.size() * sizeof(FileEntry) + (args.size() + spec.env.size()) * sizeof(StringRef);
  const uint64_t strings_offset = table_offset + table_size;
  const uint64_t strings_end = strings_offset + strings.size();

  uint64_t end = align_up(strings_end, abi::kImageDataAlign);
  std::vector<uint64_t> data_offsets;
  for (const Input& in : inputs) {
    // An empty file gets offset 0 (aligned, inside every image) so that it
    // never points past the end of an image whose last file is empty.
    data_offsets.push_back(in.data.empty() ? 0 : end);
    end = align_up(end + in.data.size(), abi::kImageDataAlign);
  }
  // The image ends right after the last byte of data (the VMM rounds its
  // mapping up to a page; the tail of that page reads as zeroes).
  uint64_t total = strings_end;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].data.empty()) total = data_offsets[i] + inputs[i].data.size();
  }
  std::vector<uint8_t> out(total, 0);

  std::memcpy(out.data(), abi::kImageMagic, sizeof(abi::kImageMagic));
  put32(out, offsetof(ImageHeader, version), abi::kImageVersion);
  put32(out, offsetof(ImageHeader, header_size), sizeof(ImageHeader));
  put32(out, offsetof(ImageHeader, file_count), uint32_t(inputs.size()));
  put32(out, offsetof(ImageHeader, arg_count), uint32_t(args.size()));
  put32(out, offsetof(ImageHeader, env_count), uint32_t(spec.env.size()));
  put32(out, offsetof(ImageHeader, exec_file), 0);
  put64(out, offsetof(ImageHeader, table_offset), table_offset);
  put64(out, offsetof(ImageHeader, strings_offset), strings_offset);
  put64(out, offsetof(ImageHeader, strings_size), strings.size());
  put32(out, offsetof(ImageHeader, flags), 0);

  uint64_t at = table_offset;
  size_t ref = 0;
  for (size_t i = 0; i < inputs.size(); ++i, at += sizeof(FileEntry), ++ref) {
    put32(out, at + offsetof(FileEntry, path) + offsetof(StringRef, offset), refs[ref].offset);
    put32(out, at + offsetof(FileEntry, path) + offsetof(StringRef, length), refs[ref].length);
    put32(out, at + offsetof(FileEntry, mode), inputs[i].mode);
    put32(out, at + offsetof(FileEntry, reserved), 0);
    put64(out, at + offsetof(FileEntry, data_offset), data_offsets[i]);
    put64(out, at + offsetof(FileEntry, data_size), inputs[i].data.size());
    if (!inputs[i].data.empty()) {
      std::memcpy(out.data() + data_offsets[i], inputs[i].data.data(), inputs[i].data.size());
    }
  }
  for (; ref < refs.size(); ++ref, at += sizeof(StringRef)) {
    put32(out, at + offsetof(StringRef, offset), refs[ref].offset);
    put32(out, at + offsetof(StringRef, length), refs[ref].length);
  }
  if (!strings.empty()) std::memcpy(out.data() + strings_offset, strings.data(), strings.size());
  put32(out, offsetof(ImageHeader, table_crc32), crc32(out.data() + table_offset, strings_end - table_offset));

  // Whatever the writer produces, the reader must accept: check here rather
  // than ship an image the guest would refuse at boot.
  ImageReader check;
  ImageStatus st = check.open(out.data(), out.size());
  if (st != ImageStatus::kOk) return Error{std::string("internal error: built image is invalid: ") + image_status_text(st)};
  return out;
}

Result<void> write_image_file(const std::string& out_path, const ImageSpec& spec) {
  EMBER_TRY(std::vector<uint8_t> image, build_image(spec));
  std::string tmp = out_path + ".tmp." + std::to_string(::getpid());
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd.valid()) return errno_error("cannot create " + tmp);
  size_t done = 0;
  while (done < image.size()) {
    ssize_t n = ::write(fd.get(), image.data() + done, image.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Error e = errno_error("cannot write " + tmp);
      ::unlink(tmp.c_str());
      return e;
    }
    done += size_t(n);
  }
  if (::fsync(fd.get()) != 0) {
    Error e = errno_error("cannot fsync " + tmp);
    ::unlink(tmp.c_str());
    return e;
  }
  fd.reset();
  if (::rename(tmp.c_str(), out_path.c_str()) != 0) {
    Error e = errno_error("cannot rename " + tmp + " to " + out_path);
    ::unlink(tmp.c_str());
    return e;
  }
  return Ok();
}

Result<std::vector<uint8_t>> read_whole_file(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return errno_error("cannot open " + path);
  std::vector<uint8_t> out;
  uint8_t buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("cannot read " + path);
    if (n == 0) break;
    out.insert(out.end(), buf, buf + n);
  }
  return out;
}

}  // namespace ember::image
