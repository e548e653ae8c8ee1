// Builds Ember function images (api/image_format.h, images/FORMAT.md) on the
// host: the program, the files it reads, its argv and envp.
#pragma once

#include <stdint.h>

#include <string>
#include <utility>
#include <vector>

#include "base/result.h"

namespace ember::image {

struct ImageSpec {
  std::string exec_host_path;   // the ELF program to run (static, or dynamic: see with_dependencies)
  std::string exec_guest_path;  // where the guest sees it; empty: "/bin/" + basename
  std::vector<std::pair<std::string, std::string>> files;  // host path, guest path
  // Host directory, guest directory: every regular file below it (symlinks
  // to files are followed, to directories are not; other kinds are
  // skipped), at the same relative path. A guest path that the program, a
  // file or an earlier tree already fills keeps that.
  std::vector<std::pair<std::string, std::string>> trees;
  std::vector<std::string> args;  // argv, argv[0] included; empty: { exec guest path }
  std::vector<std::string> env;   // "KEY=VALUE"
  // A dynamic program gets its loader and libraries from this host
  // (images/shared_libs.h), each at the guest path its ld.so will look at,
  // unless `files` already puts something there. Off: the image must carry
  // them itself (a root file system, --file).
  bool with_dependencies = true;
};

// "HOST:GUEST" (split at the first ":/", so GUEST is absolute) or "/abs"
// alone (the same path in the guest), as --file and --tree take them.
Result<std::pair<std::string, std::string>> parse_host_guest(const std::string& v);

// Normalises a guest path: collapses "//", drops "." components and a
// trailing '/'. Rejects relative paths, "..", NUL bytes, the root itself and
// paths longer than kImagePathMax. The error names the path.
Result<std::string> normalize_guest_path(const std::string& path);

// Reads every file and lays the image out: header, file table (the program
// first), argv and envp refs, strings, then each file's data at a 4 KiB
// boundary. The program must be an x86-64 ELF executable (inspect_program);
// guest paths must be distinct.
Result<std::vector<uint8_t>> build_image(const ImageSpec& spec);

// build_image, then writes OUT.tmp.<pid>, fsyncs it and renames it over
// out_path, so a reader never sees a half-written image.
Result<void> write_image_file(const std::string& out_path, const ImageSpec& spec);

// Reads a whole file (used for images and their input files).
Result<std::vector<uint8_t>> read_whole_file(const std::string& path);

}  // namespace ember::image
