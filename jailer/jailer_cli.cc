#include "jailer/jailer_cli.h"

#include "base/cli_option.h"
#include "base/parse.h"
#include "jailer/cgroups.h"

namespace ember::jail {

bool valid_id(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-')) return false;
  return true;
}

std::string jailer_usage_text() {
  std::string keys1, keys2;
  for (const CgroupKey& k : cgroup_keys())
    (k.version == 1 ? keys1 : keys2) += "                       " + std::string(k.key) + ": " + k.what + "\n";
  return "usage: ember-jailer --id ID --exec-file PATH --uid U --gid G [OPTIONS] -- run [VMM-OPTIONS] PROGRAM|--image IMG\n"
         "       ember-jailer --id ID --exec-file PATH --uid U --gid G [OPTIONS] -- restore [VMM-OPTIONS] DIR\n"
         "       ember-jailer --cleanup --id ID [--chroot-base DIR] [--parent-cgroup PATH]\n"
         "\n"
         "Runs one ember-vmm confined, as Firecracker's jailer does. As root, in this order:\n"
         "  1. validates the id ([A-Za-z0-9-], 1-64 chars) and every path: a symlink\n"
         "     anywhere in a path is refused, the jail is built only below directories\n"
         "     that nobody but root can change\n"
         "  2. closes every inherited fd but 0-2 and clears the environment\n"
         "  3. creates CHROOT_BASE/ember-vmm/ID/root (the jail's cgroups are recorded\n"
         "     on CHROOT_BASE/ember-vmm/ID for --cleanup)\n"
         "  4. joins --netns (else a new, empty network namespace), sets rlimits\n"
         "     (no-file 2048 unless told)\n"
         "  5. creates the cgroup ember/ID (v1: per controller, pids always; v2: one),\n"
         "     writes the --cgroup limits, moves the VMM in\n"
         "  6. new mount and IPC namespaces, private mounts, a tmpfs on the jail directory as\n"
         "     the new root holding exactly: the VMM binary, the guest kernel, the\n"
         "     program or image (read-only bind mounts of the files checked in step\n"
         "     1, or copies with --copy-files), the snapshot directory of `restore`\n"
         "     (always a read-only bind mount: restored VMs share its page cache),\n"
         "     dev/kvm (dev/net/tun) owned by --uid, and run/ when the VMM creates\n"
         "     files; pivot_root, unmounts the old root, root read-only. The VMM\n"
         "     arguments are rewritten to those in-jail paths (/NAME)\n"
         "  7. new PID namespace (--new-pid-ns) and --daemonize\n"
         "  8. drops every capability, setgroups to none, --gid, --uid,\n"
         "     PR_SET_NO_NEW_PRIVS, execs ember-vmm with --id ID and the rest\n"
         "ember-vmm then confines each of its threads with seccomp.\n"
         "\n"
         "What the VMM creates (the sockets of --vsock-uds PATH, the snapshot of\n"
         "--snapshot-at-ready DIR) goes to the jail's one writable directory, /run,\n"
         "owned by --uid: on the host CHROOT_BASE/ember-vmm/ID/run/, under the base\n"
         "name given (--vsock-uds /x/v.sock: CHROOT_BASE/ember-vmm/ID/run/v.sock).\n"
         "It goes with the jail at --cleanup: move a snapshot out before.\n"
         "\n"
         "Unless --daemonize or --detach, ember-jailer stays (outside the jail, as\n"
         "root, doing nothing but waiting), forwards SIGINT/SIGTERM/SIGHUP/SIGQUIT to\n"
         "the VMM, exits with the VMM's status and says why when the VMM was killed\n"
         "(the memory cgroup's OOM killer, seccomp); the VMM dies with it. The jail\n"
         "stays until `ember-jailer --cleanup --id ID`, which kills what still runs\n"
         "in its cgroups and removes them and the jail directory.\n"
         "\n"
         "options:\n"
         "  --id ID              the VM's id: [A-Za-z0-9-], 1-64 characters\n"
         "  --exec-file PATH     the ember-vmm binary (static); the guest kernel defaults\n"
         "                       to ember-guest.elf next to it (or the VMM's --kernel)\n"
         "  --uid U, --gid G     the unprivileged user and group the VMM runs as: a\n"
         "                       number, or a name from /etc/passwd and /etc/group; not\n"
         "                       0. Use one uid per VM: processes of the same uid on the\n"
         "                       host could otherwise reach the VMM\n"
         "  --chroot-base DIR    where jails live (default /srv/jailer): the jail is\n"
         "                       DIR/ember-vmm/ID/root\n"
         "  --cgroup KEY=VALUE   a cgroup limit (repeatable); keys, cgroup v1:\n" +
         keys1 + "                       cgroup v2:\n" + keys2 +
         "  --cgroup-version 1|2 default: v2 where it has the controllers the keys need,\n"
         "                       v1 on machines whose controllers are mounted as v1\n"
         "  --parent-cgroup PATH the jail's cgroup is PATH/ID below each hierarchy's\n"
         "                       root (default: <ember-jailer's own cgroup>/ember, so\n"
         "                       the VM stays under the caller's limits; on v2 with\n"
         "                       limits to set, <nearest ancestor without processes\n"
         "                       of its own>/ember, since v2 gives no controllers to\n"
         "                       the children of a cgroup with processes)\n"
         "  --netns PATH         join this network namespace (e.g. /var/run/netns/vm1)\n"
         "                       instead of a new, empty one\n"
         "  --new-pid-ns         run the VMM as PID 1 of a new PID namespace\n"
         "  --resource-limit fsize=N|no-file=N\n"
         "                       RLIMIT_FSIZE (bytes) / RLIMIT_NOFILE (default 2048)\n"
         "  --daemonize          detach: the VMM gets a new session and /dev/null as\n"
         "                       stdin/stdout/stderr; ember-jailer prints its pid and\n"
         "                       exits 0 once it runs\n"
         "  --detach             hand the VMM to the caller: it starts as a child of\n"
         "                       ember-jailer's parent (CLONE_PARENT), keeps stdio and\n"
         "                       session, and does not die with ember-jailer, which\n"
         "                       writes its pid to CHROOT_BASE/ember-vmm/ID/vmm.pid and\n"
         "                       exits 0 once it runs. The caller waits for it and reads\n"
         "                       the jail's memory cgroup for OOM kills. No supervising\n"
         "                       process per VM: what emberd uses\n"
         "  --copy-files         copy the VMM, kernel and program/image into the jail\n"
         "                       instead of read-only bind mounts (slower, ~2 ms for\n"
         "                       a 9 MB ember-vmm; the jail then owns its files)\n"
         "  --tun                also create dev/net/tun in the jail\n"
         "  --cleanup            remove the jail ID and its cgroups (kills its processes)\n"
         "  -h, --help           this text\n"
         "\n"
         "examples:\n"
         "  ember-jailer --id vm1 --exec-file build/bin/ember-vmm --uid 10001 --gid 10001 \\\n"
         "      --cgroup memory.limit_in_bytes=256M -- run --mem-mib 128 ./hello\n"
         "  ember-jailer --id vm2 --exec-file build/bin/ember-vmm --uid 10002 --gid 10002 \\\n"
         "      -- restore --vsock-uds v.sock /var/lib/ember/snap   # socket: /srv/jailer/ember-vmm/vm2/run/v.sock\n"
         "  ember-jailer --cleanup --id vm1\n"
         "\n"
         "exit status: the VMM's (the program's, 124 timeout, 125 VM failure, 128+N\n"
         "killed by signal N); 125 when the jail could not be built (one line on stderr\n"
         "naming the step and the path; nothing of the jail is left); 2 usage error.\n"
         "With --daemonize or --detach: 0 once the VMM runs.\n";
}

Result<JailerOptions> parse_jailer_cli(const std::vector<std::string>& argv) {
  JailerOptions o;
  if (argv.empty()) return Error{"missing options (try `ember-jailer --help`)"};
  bool cleanup = false;
  bool chroot_given = false;
  size_t i = 0;
  for (; i < argv.size(); i++) {
    const std::string& a = argv[i];
    if (a == "--") {
      i++;
      break;
    }
    CliOption opt(argv, &i, "`ember-jailer --help`");
    const std::string& name = opt.name();
    auto value = [&] { return opt.value(); };
    auto flag = [&] { return opt.flag(); };
    if (name == "-h" || name == "--help") {
      o.mode = JailerOptions::Mode::kHelp;
      return o;
    } else if (name == "--id") {
      EMBER_TRY(o.id, value());
    } else if (name == "--exec-file") {
      EMBER_TRY(o.exec_file, value());
    } else if (name == "--uid") {
      EMBER_TRY(o.uid, value());
    } else if (name == "--gid") {
      EMBER_TRY(o.gid, value());
    } else if (name == "--chroot-base" || name == "--chroot-base-dir") {
      EMBER_TRY(o.chroot_base, value());
      chroot_given = true;
    } else if (name == "--cgroup") {
      EMBER_TRY(auto v, value());
      const auto eq = v.find('=');
      if (eq == std::string::npos || eq == 0) return Error{"--cgroup " + v + ": expected KEY=VALUE"};
      o.cgroups.push_back(CgroupSetting{v.substr(0, eq), v.substr(eq + 1)});
      EMBER_TRY_VOID(check_cgroup_setting(o.cgroups.back(), 0));
    } else if (name == "--cgroup-version") {
      EMBER_TRY(auto v, value());
      if (v != "1" && v != "2") return Error{"--cgroup-version " + v + ": must be 1 or 2"};
      o.cgroup_version = v[0] - '0';
    } else if (name == "--parent-cgroup") {
      EMBER_TRY(o.parent_cgroup, value());
      bool ok = !o.parent_cgroup.empty() && o.parent_cgroup.size() <= 256;
      size_t start = 0;
      const std::string& p = o.parent_cgroup;
      for (size_t j = 0; j <= p.size() && ok; j++) {
        if (j < p.size() && p[j] != '/') {
          const char c = p[j];
          ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
               c == '_' || c == '.' || c == '@';
          continue;
        }
        const std::string comp = p.substr(start, j - start);
        ok = comp != "." && comp != "..";
        start = j + 1;
      }
      if (!ok) return Error{"--parent-cgroup " + p + ": expected a path like ember or vms/ember ([A-Za-z0-9._@-], no ..)"};
    } else if (name == "--netns") {
      EMBER_TRY(o.netns, value());
      if (o.netns.empty()) return Error{"--netns needs a path"};
    } else if (name == "--new-pid-ns") {
      EMBER_TRY_VOID(flag());
      o.new_pid_ns = true;
    } else if (name == "--daemonize") {
      EMBER_TRY_VOID(flag());
      o.daemonize = true;
    } else if (name == "--detach") {
      EMBER_TRY_VOID(flag());
      o.detach = true;
    } else if (name == "--copy-files") {
      EMBER_TRY_VOID(flag());
      o.copy_files = true;
    } else if (name == "--tun") {
      EMBER_TRY_VOID(flag());
      o.tun = true;
    } else if (name == "--cleanup") {
      EMBER_TRY_VOID(flag());
      cleanup = true;
    } else if (name == "--resource-limit") {
      EMBER_TRY(auto v, value());
      const auto eq = v.find('=');
      uint64_t n = 0;
      const std::string key = eq == std::string::npos ? v : v.substr(0, eq);
      if (eq == std::string::npos || !parse_u64(v.substr(eq + 1), &n))
        return Error{"--resource-limit " + v + ": expected fsize=N or no-file=N (N a number)"};
      if (key == "fsize") {
        o.rlimit_fsize = n;
      } else if (key == "no-file") {
        if (n < 16 || n > (1u << 20)) return Error{"--resource-limit no-file=" + std::to_string(n) + ": must be 16..1048576"};
        o.rlimit_nofile = n;
      } else {
        return Error{"--resource-limit " + key + ": unknown resource (fsize, no-file)"};
      }
    } else {
      return Error{"unknown option '" + a + "' (see `ember-jailer --help`; VMM arguments go after --)"};
    }
  }
  o.vmm_args.assign(argv.begin() + static_cast<std::ptrdiff_t>(i), argv.end());

  if (o.id.empty()) return Error{"missing --id ID (see `ember-jailer --help`)"};
  if (!valid_id(o.id)) return Error{"--id " + o.id + ": expected 1-64 characters from [A-Za-z0-9-]"};
  if (o.chroot_base.empty()) return Error{"--chroot-base needs a path"};
  (void)chroot_given;
  if (cleanup) {
    if (!o.exec_file.empty() || !o.vmm_args.empty() || !o.cgroups.empty())
      return Error{"--cleanup takes only --id, --chroot-base and --parent-cgroup"};
    o.mode = JailerOptions::Mode::kCleanup;
    return o;
  }
  if (o.exec_file.empty()) return Error{"missing --exec-file PATH (the ember-vmm binary)"};
  if (o.uid.empty()) return Error{"missing --uid U"};
  if (o.gid.empty()) return Error{"missing --gid G"};
  if (o.vmm_args.empty()) return Error{"missing VMM arguments after -- (e.g. -- run ./hello)"};
  if (o.daemonize && o.detach) return Error{"--daemonize and --detach exclude each other (see `ember-jailer --help`)"};
  if (o.cgroup_version)
    for (const CgroupSetting& s : o.cgroups) EMBER_TRY_VOID(check_cgroup_setting(s, o.cgroup_version));
  o.mode = JailerOptions::Mode::kJail;
  return o;
}

}  // namespace ember::jail
