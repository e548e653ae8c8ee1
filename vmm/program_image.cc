#include "vmm/program_image.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>

#include "api/guest_layout.h"
#include "api/image_format.h"
#include "images/image_reader.h"
#include "images/image_writer.h"
#include "images/program_check.h"

namespace ember {

namespace {

constexpr uint64_t kPage = 4096;
uint64_t page_up(uint64_t v) { return (v + kPage - 1) & ~(kPage - 1); }

void put32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
void put64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }

// The exec file's checks shared by every path: an x86-64 program inside the image.
Result<void> check_image(const uint8_t* data, uint64_t size, const std::string& what) {
  image::ImageReader reader;
  const auto status = reader.open(data, size);
  if (status != image::ImageStatus::kOk) return Error{what + ": " + image::image_status_text(status)};
  const image::ImageFile exec = reader.file(reader.exec_index());
  if (auto ok = image::inspect_program(exec.data, exec.size); !ok)
    return Error{what + ": program " + std::string(exec.path.data, exec.path.size) + " " + ok.message()};
  return Ok();
}

// A dynamic program or one with more files: packed by image::build_image
// (a dynamic one with its loader and libraries, images/shared_libs.h) into
// anonymous, then read-only, memory.
Result<MappedImage> pack_program(const ProgramImageSpec& spec) {
  image::ImageSpec is;
  is.exec_host_path = spec.program;
  is.exec_guest_path = spec.guest_path;
  is.args = spec.args;
  is.env = spec.env;
  is.files = spec.files;
  is.trees = spec.trees;
  EMBER_TRY(std::vector<uint8_t> bytes, image::build_image(is));
  const uint64_t mapped = page_up(bytes.size());
  void* base = ::mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) return errno_error("mmap image");
  MappedImage out;
  out.mapping = Mapping(base, mapped);
  out.size = bytes.size();
  std::memcpy(base, bytes.data(), bytes.size());
  if (::mprotect(base, mapped, PROT_READ) < 0) return errno_error("mprotect image");
  EMBER_TRY_VOID(check_image(out.data(), out.size, "program " + spec.program));
  return out;
}

// Whether the program file names a loader (PT_INTERP). A file that cannot
// be read here fails later, with the reason, on the static path.
bool is_dynamic(int fd, uint64_t size) {
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) return false;
  const Mapping file(p, size);
  auto info = image::inspect_program(file.bytes(), size);
  return info && !info->interpreter.empty();
}

}  // namespace

Result<MappedImage> map_program_image(const ProgramImageSpec& spec) {
  Fd fd(::open(spec.program.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return errno_error("program " + spec.program);
  struct stat st;
  if (::fstat(fd.get(), &st) < 0) return errno_error("program " + spec.program);
  if (!S_ISREG(st.st_mode)) return Error{"program " + spec.program + ": not a regular file"};
  const uint64_t program_size = static_cast<uint64_t>(st.st_size);
  unsigned char magic[4] = {};
  if (program_size < 4 || ::pread(fd.get(), magic, 4, 0) != 4 || std::memcmp(magic, "\177ELF", 4) != 0)
    return Error{"program " + spec.program + ": not an ELF executable (Ember runs Linux x86-64 ELF programs)"};
  if (program_size > abi::kMaxImageSize) return Error{"program " + spec.program + ": too large"};
  if (!spec.files.empty() || !spec.trees.empty() || is_dynamic(fd.get(), program_size)) return pack_program(spec);

  auto guest = image::normalize_guest_path(spec.guest_path);
  if (!guest) return Error{"program " + spec.program + ": " + guest.message()};
  if (spec.args.size() > abi::kImageMaxStrings) return Error{"too many arguments"};
  if (spec.env.size() > abi::kImageMaxStrings) return Error{"too many environment entries"};
  for (const auto* list : {&spec.args, &spec.env})
    for (const std::string& s : *list)
      if (s.find('\0') != std::string::npos || s.size() > UINT32_MAX - 1)
        return Error{"argument or environment entry with a NUL byte or too long"};

  // Strings: the path, then args, then env; each followed by a NUL.
  std::vector<uint8_t> strings;
  std::vector<abi::StringRef> refs;
  auto add_string = [&](const std::string& s) {
    refs.push_back(abi::StringRef{static_cast<uint32_t>(strings.size()), static_cast<uint32_t>(s.size())});
    strings.insert(strings.end(), s.begin(), s.end());
    strings.push_back(0);
  };
  add_string(*guest);
  for (const std::string& a : spec.args) add_string(a);
  for (const std::string& e : spec.env) add_string(e);
  if (strings.size() > UINT32_MAX) return Error{"arguments and environment exceed 4 GiB"};

  const uint64_t table_offset = sizeof(abi::ImageHeader);
  const uint64_t table_size = sizeof(abi::FileEntry) + (spec.args.size() + spec.env.size()) * sizeof(abi::StringRef);
  const uint64_t strings_offset = table_offset + table_size;
  const uint64_t strings_end = strings_offset + strings.size();
  const uint64_t data_offset = page_up(strings_end);
  const uint64_t total = data_offset + program_size;
  const uint64_t mapped = page_up(total);
  if (total > abi::kMaxImageSize) return Error{"image too large"};

  // Metadata pages: anonymous, written, then made read-only. The program's
  // pages follow at data_offset, mapped from the file over the same range.
  void* base = ::mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) return errno_error("mmap image");
  MappedImage out;
  out.mapping = Mapping(base, mapped);
  out.size = total;
  uint8_t* img = out.mapping.bytes();

  std::memcpy(img, abi::kImageMagic, sizeof abi::kImageMagic);
  put32(img + offsetof(abi::ImageHeader, version), abi::kImageVersion);
  put32(img + offsetof(abi::ImageHeader, header_size), sizeof(abi::ImageHeader));
  put32(img + offsetof(abi::ImageHeader, file_count), 1);
  put32(img + offsetof(abi::ImageHeader, arg_count), static_cast<uint32_t>(spec.args.size()));
  put32(img + offsetof(abi::ImageHeader, env_count), static_cast<uint32_t>(spec.env.size()));
  put32(img + offsetof(abi::ImageHeader, exec_file), 0);
  put64(img + offsetof(abi::ImageHeader, table_offset), table_offset);
  put64(img + offsetof(abi::ImageHeader, strings_offset), strings_offset);
  put64(img + offsetof(abi::ImageHeader, strings_size), strings.size());
  put32(img + offsetof(abi::ImageHeader, flags), 0);

  uint8_t* entry = img + table_offset;
  put32(entry + offsetof(abi::FileEntry, path) + offsetof(abi::StringRef, offset), refs[0].offset);
  put32(entry + offsetof(abi::FileEntry, path) + offsetof(abi::StringRef, length), refs[0].length);
  put32(entry + offsetof(abi::FileEntry, mode), abi::kFileModeExec);
  put32(entry + offsetof(abi::FileEntry, reserved), 0);
  put64(entry + offsetof(abi::FileEntry, data_offset), data_offset);
  put64(entry + offsetof(abi::FileEntry, data_size), program_size);
  uint8_t* ref = entry + sizeof(abi::FileEntry);
  for (size_t i = 1; i < refs.size(); i++, ref += sizeof(abi::StringRef)) {
    put32(ref + offsetof(abi::StringRef, offset), refs[i].offset);
    put32(ref + offsetof(abi::StringRef, length), refs[i].length);
  }
  std::memcpy(img + strings_offset, strings.data(), strings.size());
  put32(img + offsetof(abi::ImageHeader, table_crc32),
        image::crc32(img + table_offset, strings_end - table_offset));

  if (::mprotect(img, data_offset, PROT_READ) < 0) return errno_error("mprotect image");
  if (::mmap(img + data_offset, mapped - data_offset, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd.get(), 0) == MAP_FAILED)
    return errno_error("mmap program " + spec.program);

  EMBER_TRY_VOID(check_image(img, total, "program " + spec.program));
  return out;
}

Result<MappedImage> map_image_file(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return errno_error("image " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) < 0) return errno_error("image " + path);
  if (!S_ISREG(st.st_mode)) return Error{"image " + path + ": not a regular file"};
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size == 0) return Error{"image " + path + ": empty file"};
  if (size > abi::kMaxImageSize)
    return Error{"image " + path + ": too large (" + std::to_string(size >> 20) + " MiB, max " +
                 std::to_string(abi::kMaxImageSize >> 20) + " MiB)"};
  const uint64_t mapped = page_up(size);
  void* p = ::mmap(nullptr, mapped, PROT_READ, MAP_PRIVATE, fd.get(), 0);
  if (p == MAP_FAILED) return errno_error("mmap image " + path);
  MappedImage out;
  out.mapping = Mapping(p, mapped);
  out.size = size;
  EMBER_TRY_VOID(check_image(out.data(), size, "image " + path));
  return out;
}

}  // namespace ember
