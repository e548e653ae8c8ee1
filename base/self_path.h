// Where the running binary lives: Ember's programs find their siblings
// (ember-vmm, ember-jailer, the guest kernel) next to themselves.
#pragma once

#include <unistd.h>

#include <string>

namespace ember {

// The directory of /proc/self/exe (the kernel's resolved path); "." if unreadable.
inline std::string self_dir() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  const std::string self(buf, static_cast<size_t>(n));
  const auto slash = self.rfind('/');
  return slash == std::string::npos ? std::string(".") : slash == 0 ? std::string("/") : self.substr(0, slash);
}

}  // namespace ember
