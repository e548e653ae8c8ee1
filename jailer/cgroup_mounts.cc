#include "jailer/cgroup_mounts.h"

#include <cctype>

#include "jailer/plain_text.h"

namespace ember::jail {

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == '\\' && i + 3 < s.size() && std::isdigit(static_cast<unsigned char>(s[i + 1]))) {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace

std::vector<CgroupMount> parse_cgroup_mounts(const std::string& mountinfo) {
  std::vector<CgroupMount> out;
  for (const std::string& line : lines_of(mountinfo)) {
    const auto sep = line.find(" - ");
    if (sep == std::string::npos) continue;
    const auto pre = split(line.substr(0, sep), ' ');
    const auto post = split(line.substr(sep + 3), ' ');
    if (pre.size() < 5 || post.size() < 3) continue;
    CgroupMount m;
    m.path = unescape(pre[4]);
    if (post[0] == "cgroup2") {
      m.version = 2;
    } else if (post[0] == "cgroup") {
      m.version = 1;
      for (const std::string& opt : split(post[2], ',')) {
        if (opt == "rw" || opt == "ro" || opt.find('=') != std::string::npos || opt == "clone_children" ||
            opt == "noprefix" || opt == "xattr" || opt == "cpuset_v2_mode" || opt == "favordynmods")
          continue;
        m.controllers.push_back(opt);
      }
      if (m.controllers.empty()) continue;  // a named hierarchy (name=systemd)
    } else {
      continue;
    }
    // The same hierarchy may be mounted twice: keep the first.
    bool dup = false;
    for (const CgroupMount& o : out)
      dup |= o.version == m.version && (m.version == 2 ? true : o.controllers == m.controllers);
    if (!dup) out.push_back(m);
  }
  return out;
}

std::string own_cgroup(const std::string& proc_self_cgroup, int version, const std::string& controller) {
  for (const std::string& line : lines_of(proc_self_cgroup)) {
    const auto a = line.find(':');
    const auto b = a == std::string::npos ? std::string::npos : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string ctrls = line.substr(a + 1, b - a - 1);
    const std::string path = line.substr(b + 1);
    if (version == 2) {
      if (line.compare(0, a, "0") == 0 && ctrls.empty()) return path;
    } else {
      for (const std::string& c : split(ctrls, ','))
        if (c == controller) return path;
    }
  }
  return "";
}

}  // namespace ember::jail
