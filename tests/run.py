#!/usr/bin/env python3
"""Runs Ember's tests and says plainly where each one ran.

    tests/run.py [--build DIR] [--where auto|kvm|emulated] [--filter GTEST_FILTER]
                 [--shards N] [--fuzz-bin DIR [--fuzz-seconds S]] [--no-unit] [--no-vm]

Unit tests (no /dev/kvm needed) run on this host. VM tests (every test of
ember_integration_tests: real microVMs) run on this host's /dev/kvm where it
is usable, and otherwise under scripts/kvm-in-qemu (a real, emulated KVM
inside QEMU TCG: ~5 minutes for all of them on 2 cores), in --shards guests
side by side, a fresh guest every EMBER_TEST_BATCH (25) tests. Where neither
can be had, they fail: a VM test that did not run has not passed, and a VM
test that skipped for want of /dev/kvm or root fails too.

A test that hangs (no output for EMBER_TEST_STALL_S seconds, default 180)
fails; the rest of its shard goes on in a fresh guest. Logs of every shard:
BUILD/test-logs/. The last line is 'tests: N passed, N failed, N skipped'.
"""
import argparse
import fcntl
import os
import re
import select
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
KVM_IN_QEMU = os.path.join(ROOT, "scripts", "kvm-in-qemu")

# gtest: "[  FAILED  ] Suite.Name, where GetParam() = ... (12 ms)"
RESULT = re.compile(r"^\[ +(OK|FAILED|SKIPPED) +\] ([^\s,]+)(?:, where .*?)?(?: \((\d+) ms\))?\s*$")
RUN = re.compile(r"^\[ RUN +\] (\S+)")
# A skip that says the machine lacked what the test needs: not a pass, a failure.
MISSING_NEED = re.compile(r"/dev/kvm|needs root", re.I)


class Test:
    def __init__(self, name, kind):
        self.name, self.kind = name, kind  # kind: "unit" | "vm"
        self.where = None                  # "host" | "kvm" | "emulated"
        self.result = None                 # "OK" | "FAILED" | "SKIPPED" | None (did not finish)
        self.ms = 0
        self.output = []
        self.note = ""
        self.hangs = 0


def kvm_usable():
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return False, f"/dev/kvm: {e.strerror}"
    os.close(fd)
    return True, ""


def list_tests(binary, gtest_filter):
    out = subprocess.run([binary, "--gtest_list_tests", f"--gtest_filter={gtest_filter}"],
                         capture_output=True, text=True, check=True).stdout
    names, suite = [], None
    for line in out.splitlines():
        if not line.strip() or line.startswith("Running main"):
            continue
        if not line.startswith(" "):
            suite = line.strip()
        else:
            names.append(suite + line.split()[0])
    return names


class Shard:
    """One stream of gtest output (a host process or a kvm-in-qemu guest)."""

    def __init__(self, label, tests, argv, env, log_path, quiet_ok=False):
        self.label, self.tests, self.argv, self.env = label, tests, argv, env
        self.quiet_ok = quiet_ok
        self.by_name = {t.name: t for t in tests}
        self.log = open(log_path, "a")
        self.current = None
        self.buf = b""
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, cwd=env.get("EMBER_CWD"))
        fl = fcntl.fcntl(self.proc.stdout, fcntl.F_GETFL)
        fcntl.fcntl(self.proc.stdout, fcntl.F_SETFL, fl | os.O_NONBLOCK)
        self.last_output = time.monotonic()

    def feed(self):
        try:
            chunk = os.read(self.proc.stdout.fileno(), 65536)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        self.last_output = time.monotonic()
        self.log.write(chunk.decode(errors="replace"))
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        for raw in lines:
            self.line(raw.decode(errors="replace"))
        return True

    def line(self, line):
        m = RUN.match(line)
        if m and m.group(1) in self.by_name:
            self.current = self.by_name[m.group(1)]
            self.current.output = []
            return
        m = RESULT.match(line)
        if m and self.current is not None and m.group(2) == self.current.name:
            t = self.current
            t.result, t.ms = m.group(1), int(m.group(3) or 0)
            self.current = None
            if t.result == "SKIPPED":
                # gtest prints "file:line: Skipped" then the reason.
                reason = [l for l in t.output if l.strip() and not l.endswith(": Skipped")]
                t.note = " ".join(reason).strip()
            if t.result != "OK" or not self.quiet_ok:
                print(f"  [{self.label}] {t.result:7} {t.ms / 1000:7.1f}s  {t.name}"
                      + (f"  ({t.note})" if t.note else ""), flush=True)
            if t.result == "FAILED":
                print("\n".join("      | " + l for l in t.output[-60:]), flush=True)
            return
        if self.current is not None:
            self.current.output.append(line)

    def kill(self):
        # The process group, and every descendant that left it (GNU timeout
        # makes a group of its own unless --foreground): a hung guest's QEMU
        # left running would hold CPUs that the next guests need.
        doomed = descendants(self.proc.pid)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in doomed:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def descendants(root):
    """Every process below `root`, from /proc's parent links."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def run_batches(make_shard, batches, parallel, stall_s):
    """Runs the batches, `parallel` at a time. A test that crashes its shard
    fails; one that hangs (no output for stall_s) has its guest or process
    killed and runs once more, first in a fresh one: under emulation the
    whole nested machine has been seen to stall (see the summary's 'hung'
    list), and a second hang fails it. The tests after it go on either way."""
    queue = [b for b in batches if b]
    active, n = [], 0
    while queue or active:
        while queue and len(active) < parallel:
            active.append(make_shard(n, queue.pop(0)))
            n += 1
        fds = {s.proc.stdout.fileno(): s for s in active}
        ready, _, _ = select.select(list(fds), [], [], 5)
        for fd in ready:
            s = fds[fd]
            if not s.feed():
                s.proc.wait()
                active.remove(s)
                queue[:0] = finish_shard(s, "its process exited")
        now = time.monotonic()
        for s in list(active):
            if now - s.last_output > stall_s:
                s.kill()
                s.proc.wait()
                active.remove(s)
                t = s.current
                if t is not None:
                    t.hangs += 1
                    print(f"  [{s.label}] HUNG    {t.name}: no output for {stall_s} s, killed"
                          + ("; it runs again in a fresh one" if t.hangs < 2 else ""), flush=True)
                    if t.hangs >= 2:
                        t.result, t.note = "FAILED", f"hung twice (no output for {stall_s} s each time)"
                    s.current = None
                queue[:0] = finish_shard(s, "it hung")


def finish_shard(s, why):
    """What of the shard is left to run elsewhere."""
    if s.buf:
        s.line(s.buf.decode(errors="replace"))
    if s.current is not None and s.current.result is None:
        s.current.result = "FAILED"
        s.current.note = f"did not finish: {why} (status {s.proc.returncode}) while it ran"
        print(f"  [{s.label}] FAILED  {s.current.name} ({s.current.note})", flush=True)
        print("\n".join("      | " + l for l in s.current.output[-60:]), flush=True)
    left = [t for t in s.tests if t.result is None]
    if not left:
        return []
    if why == "it hung" or s.current is not None:
        print(f"  [{s.label}] {len(left)} tests left: going on in a fresh run", flush=True)
        return [left]
    for t in left:  # it exited between tests without running them: nothing to gain from another try
        t.result = "FAILED"
        t.note = f"never ran: its shard stopped ({why}, status {s.proc.returncode})"
    return []


def gtest_filter_for(tests):
    return ":".join(t.name for t in tests)


def run_unit(build, tests, shards, logs):
    binary = os.path.join(build, "bin", "ember_unit_tests")
    def make(i, group):
        env = dict(os.environ)
        for t in group:
            t.where = "host"
        argv = [binary, "--gtest_filter=" + gtest_filter_for(group)]
        return Shard(f"unit {i}", group, argv, env, os.path.join(logs, f"unit-{i}.log"), quiet_ok=True)

    run_batches(make, [tests[i::shards] for i in range(shards)], shards, int(os.environ.get("EMBER_TEST_STALL_S", "180")))


def run_vm(build, tests, where, shards, logs):
    binary = os.path.abspath(os.path.join(build, "bin", "ember_integration_tests"))
    stall = int(os.environ.get("EMBER_TEST_STALL_S", "180"))
    # Under emulation: short-lived guests (a boot costs ~5 s), since long runs
    # in one nested guest have stalled.
    per = len(tests) if where == "kvm" else int(os.environ.get("EMBER_TEST_BATCH", "25"))
    batches = [tests[i::shards] for i in range(shards)] if where == "kvm" else \
        [tests[i:i + per] for i in range(0, len(tests), per)]
    if where == "emulated":
        setup = subprocess.run(["bash", os.path.join(KVM_IN_QEMU, "setup.sh")],
                               env=dict(os.environ, KVMVM_HOME=os.path.join(build, "kvm-in-qemu")))
        if setup.returncode != 0:
            for t in tests:
                t.result, t.where = "FAILED", where
                t.note = "never ran: scripts/kvm-in-qemu/setup.sh failed"
            return

    def make(i, group):
        for t in group:
            t.where = where
        gf = "--gtest_filter=" + gtest_filter_for(group)
        env = dict(os.environ, EMBER_CWD=os.path.abspath(build))
        if where == "kvm":
            argv = [binary, gf]
        else:
            env["KVMVM_HOME"] = os.path.abspath(os.path.join(build, "kvm-in-qemu"))
            env.setdefault("KVMVM_TIMEOUT", "3000")
            # One emulated CPU per guest where the guests fill the host's cores:
            # with 2 guests of 2 vCPUs on 2 cores, every VM test took 670 s and
            # 1-8 guests per run stalled for good (both vCPUs in soft lockup
            # inside ember-vmm or emberd: a spin-wait on a descheduled vCPU
            # thread); with 1 vCPU each, 290 s and no stall.
            env.setdefault("KVMVM_SMP", str(max(1, (os.cpu_count() or 2) // shards)))
            # emberd's jails need a tmpfs (Unix sockets cannot be made on 9p).
            cmd = f"mkdir -p /srv/ember && mount -t tmpfs tmpfs /srv/ember && exec {binary} '{gf}'"
            argv = [os.path.join(KVM_IN_QEMU, "run.sh"), cmd]
        return Shard(f"{where} {i}", group, argv, env, os.path.join(logs, f"vm-{i}.log"))

    run_batches(make, batches, shards, stall)


def run_fuzz(fuzz_bin, seconds, logs):
    """Each libFuzzer target for `seconds` on its seed corpus (tests/fuzz/run.sh)."""
    tests = []
    for name in sorted(os.listdir(fuzz_bin)):
        path = os.path.join(fuzz_bin, name)
        if not name.startswith("fuzz_") or not os.access(path, os.X_OK):
            continue
        t = Test(name, "fuzz")
        t.where = "host"
        t0 = time.monotonic()
        r = subprocess.run(["bash", os.path.join(HERE, "fuzz", "run.sh"), fuzz_bin, str(seconds), name],
                           capture_output=True, text=True)
        t.ms = int((time.monotonic() - t0) * 1000)
        t.result = "OK" if r.returncode == 0 else "FAILED"
        t.output = (r.stdout + r.stderr).splitlines()
        with open(os.path.join(logs, f"{name}.log"), "w") as f:
            f.write(r.stdout + r.stderr)
        last = t.output[-1] if t.output else ""
        print(f"  [fuzz] {t.result:7} {t.ms / 1000:7.1f}s  {name}  {last}", flush=True)
        if t.result == "FAILED":
            print("\n".join("      | " + l for l in t.output[-40:]), flush=True)
        tests.append(t)
    if not tests:
        t = Test("fuzz targets", "fuzz")
        t.result, t.where, t.note = "FAILED", "host", f"no fuzz_* targets in {fuzz_bin}"
        tests.append(t)
    return tests


def summarize(tests):
    fail = False

    def line(label, ts):
        p = sum(t.result == "OK" for t in ts)
        f = sum(t.result == "FAILED" for t in ts)
        s = sum(t.result == "SKIPPED" for t in ts)
        return f"  {label:44} {p:4} passed, {f:3} failed, {s:3} skipped"

    for t in tests:
        if t.result == "SKIPPED" and t.kind == "vm" and MISSING_NEED.search(t.note):
            t.result = "FAILED"
            t.note = "skipped for want of what it needs, so it has not passed: " + t.note
    print("\n== where the tests ran ==")
    groups = [("unit tests, on this host (no KVM needed)", "unit", "host"),
              ("fuzz targets, on this host", "fuzz", "host"),
              ("VM tests, on this host's /dev/kvm", "vm", "kvm"),
              ("VM tests, emulated KVM (kvm-in-qemu)", "vm", "emulated")]
    for label, kind, where in groups:
        ts = [t for t in tests if t.kind == kind and t.where == where]
        print(line(label, ts) if ts else f"  {label:44} none ran here")
    skipped = [t for t in tests if t.result == "SKIPPED"]
    if skipped:
        print("\n== skipped, and why ==")
        for t in skipped:
            print(f"  {t.name}: {t.note or '(no reason given)'}")
    failed = [t for t in tests if t.result != "OK" and t.result != "SKIPPED"]
    if failed:
        fail = True
        print("\n== failed ==")
        for t in failed:
            print(f"  [{t.where}] {t.name}" + (f": {t.note}" if t.note else ""))
    hung = [t for t in tests if t.hangs]
    if hung:
        print("\n== hung (no output; the guest or process was killed and the test run again) ==")
        for t in hung:
            print(f"  [{t.where}] {t.name}: hung {t.hangs}x, then {t.result}")
    slow = sorted((t for t in tests if t.kind == "vm" and t.result), key=lambda t: -t.ms)[:5]
    if slow:
        print("\n== slowest VM tests ==")
        for t in slow:
            print(f"  {t.ms / 1000:7.1f}s  [{t.where}] {t.name}")
    p = sum(t.result == "OK" for t in tests)
    s = len(skipped)
    print(f"\ntests: {p} passed, {len(failed)} failed, {s} skipped")
    return not fail


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--where", choices=["auto", "kvm", "emulated"], default="auto",
                    help="where VM tests run (auto: /dev/kvm if usable, else kvm-in-qemu)")
    ap.add_argument("--filter", default="*", help="a gtest filter over both binaries")
    ap.add_argument("--shards", type=int, default=int(os.environ.get("EMBER_TEST_SHARDS", "2")),
                    help="processes (or QEMU guests) side by side, for each binary")
    ap.add_argument("--fuzz-bin", help="also run the libFuzzer targets in this directory")
    ap.add_argument("--fuzz-seconds", type=int, default=20)
    ap.add_argument("--no-unit", action="store_true")
    ap.add_argument("--no-vm", action="store_true")
    a = ap.parse_args()
    logs = os.path.join(a.build, "test-logs")
    os.makedirs(logs, exist_ok=True)
    for f in os.listdir(logs):
        os.remove(os.path.join(logs, f))
    bins = os.path.join(a.build, "bin")
    tests = []
    started = time.monotonic()

    if not a.no_unit:
        unit = [Test(n, "unit") for n in list_tests(os.path.join(bins, "ember_unit_tests"), a.filter)]
        print(f"== unit tests: {len(unit)}, on this host ==", flush=True)
        run_unit(a.build, unit, a.shards, logs)
        tests += unit

    if not a.no_vm:
        names = list_tests(os.path.join(bins, "ember_integration_tests"), a.filter)
        usable, why = kvm_usable()
        where = a.where if a.where != "auto" else ("kvm" if usable else "emulated")
        vm = [Test(n, "vm") for n in names]
        how = "this host's /dev/kvm" if where == "kvm" else \
            f"emulated KVM (scripts/kvm-in-qemu, QEMU TCG; {why or 'asked for'})"
        print(f"\n== VM tests: {len(vm)}, on {how} ==", flush=True)
        t0 = time.monotonic()
        run_vm(a.build, vm, where, a.shards, logs)
        print(f"  VM tests took {time.monotonic() - t0:.0f} s", flush=True)
        tests += vm

    if a.fuzz_bin:
        print(f"\n== fuzz targets, {a.fuzz_seconds} s each ==", flush=True)
        tests += run_fuzz(a.fuzz_bin, a.fuzz_seconds, logs)

    ok = summarize(tests)
    print(f"(all tests took {time.monotonic() - started:.0f} s; logs in {logs})")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
