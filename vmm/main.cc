// ember-vmm: boots one microVM that runs one program (see `ember-vmm run --help`).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "images/image_reader.h"
#include "images/image_writer.h"
#include "vmm/cli.h"
#include "vmm/fd.h"
#include "vmm/machine.h"
#include "vmm/result.h"

namespace {

constexpr int kExitUsage = 2;
constexpr int kExitVmm = 125;

void print_error(const std::string& message) {
  const std::string line = "ember-vmm: " + message + "\n";
  ssize_t r = ::write(2, line.data(), line.size());
  (void)r;
}

std::string default_kernel_path() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "ember-guest.elf";
  std::string self(buf, static_cast<size_t>(n));
  const auto slash = self.rfind('/');
  return (slash == std::string::npos ? std::string(".") : self.substr(0, slash)) + "/ember-guest.elf";
}

std::string basename_of(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

struct ImageFile {
  ember::Fd fd;
  uint64_t size = 0;
};

// PROGRAM: checked to be an ELF file, then packed into an image in a memfd
// (never touches the disk).
ember::Result<ImageFile> pack_program(const ember::CliOptions& o) {
  {
    ember::Fd fd(::open(o.program.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return ember::errno_error("program " + o.program);
    struct stat st;
    if (::fstat(fd.get(), &st) < 0) return ember::errno_error("program " + o.program);
    if (!S_ISREG(st.st_mode)) return ember::Error{"program " + o.program + ": not a regular file"};
    unsigned char magic[4] = {};
    if (::pread(fd.get(), magic, 4, 0) != 4 || std::memcmp(magic, "\177ELF", 4) != 0)
      return ember::Error{"program " + o.program + ": not an ELF executable (Ember runs static Linux x86-64 ELF programs)"};
  }
  ember::image::ImageSpec spec;
  spec.exec_host_path = o.program;
  spec.exec_guest_path = "/bin/" + basename_of(o.program);
  spec.args.push_back(o.program);
  spec.args.insert(spec.args.end(), o.args.begin(), o.args.end());
  spec.env = o.env;
  EMBER_TRY(auto bytes, ember::image::build_image(spec));

  ImageFile out;
  out.fd = ember::Fd(::memfd_create("ember-image", MFD_CLOEXEC));
  if (!out.fd.valid()) return ember::errno_error("memfd_create");
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t w = ::write(out.fd.get(), bytes.data() + done, bytes.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return ember::errno_error("writing the image to a memfd");
    done += static_cast<size_t>(w);
  }
  out.size = bytes.size();
  return out;
}

// --image IMG: validated here (clear errors before any VM exists); the guest
// validates it again, it trusts nothing either.
ember::Result<ImageFile> open_image(const std::string& path) {
  ImageFile out;
  out.fd = ember::Fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!out.fd.valid()) return ember::errno_error("image " + path);
  struct stat st;
  if (::fstat(out.fd.get(), &st) < 0) return ember::errno_error("image " + path);
  if (!S_ISREG(st.st_mode)) return ember::Error{"image " + path + ": not a regular file"};
  out.size = static_cast<uint64_t>(st.st_size);
  if (out.size == 0) return ember::Error{"image " + path + ": empty file"};
  void* p = ::mmap(nullptr, out.size, PROT_READ, MAP_PRIVATE, out.fd.get(), 0);
  if (p == MAP_FAILED) return ember::errno_error("mmap image " + path);
  ember::Mapping map(p, out.size);
  ember::image::ImageReader reader;
  const auto status = reader.open(map.bytes(), out.size);
  if (status != ember::image::ImageStatus::kOk)
    return ember::Error{"image " + path + ": " + ember::image::image_status_text(status)};
  const ember::image::ImageFile exec = reader.file(reader.exec_index());
  const std::string exec_path(exec.path.data, exec.path.size);
  if (exec.size < 4 || std::memcmp(exec.data, "\177ELF", 4) != 0)
    return ember::Error{"image " + path + ": program " + exec_path + " is not an ELF executable"};
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const uint64_t t0 = ember::monotonic_ns();
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::fputs(ember::usage_text().c_str(), stderr);
    return kExitUsage;
  }
  auto parsed = ember::parse_cli(args);
  if (!parsed) {
    print_error(parsed.message());
    return kExitUsage;
  }
  const ember::CliOptions& o = *parsed;
  if (o.command == ember::CliOptions::Command::kHelp) {
    std::fputs(ember::usage_text().c_str(), stdout);
    return 0;
  }
  if (o.command == ember::CliOptions::Command::kRunHelp) {
    std::fputs(ember::run_usage_text().c_str(), stdout);
    return 0;
  }

  auto image = o.image.empty() ? pack_program(o) : open_image(o.image);
  if (!image) {
    print_error(image.message());
    return kExitVmm;
  }

  ember::MachineConfig config;
  config.kernel_path = o.kernel.empty() ? default_kernel_path() : o.kernel;
  config.mem_size = o.mem_mib << 20;
  config.image_fd = image->fd.get();
  config.image_size = image->size;
  config.timeout_ms = o.timeout_ms;
  config.verbose = o.verbose;
  const char* trace = std::getenv("EMBER_TRACE");
  config.trace = trace && *trace && std::strcmp(trace, "0") != 0;
  config.cmdline = o.cmdline;
  config.t0_ns = t0;
  config.detach_teardown = true;

  auto outcome = ember::run_machine(config);
  if (!outcome) {
    print_error(outcome.message());
    return kExitVmm;
  }
  if (!outcome->error.empty()) print_error(outcome->error);
  return outcome->status;
}
