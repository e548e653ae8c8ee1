// Programs nobody here wrote, as Debian ships them (dynamically linked),
// run by `ember-vmm run` inside real microVMs: their loader and libraries
// come along (images/shared_libs.h), their data files with --tree. The
// answers are what the same programs print on Linux.
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "tests/integration/vm_fixture.h"

namespace ember::testing {
namespace {

class DebianPrograms : public VmTest {
 protected:
  // Debian's python3 with its standard library (256 MiB: the image is ~65 MB).
  static ProcessResult python(const std::vector<std::string>& args, const std::string& input = {}) {
    const std::string lib = stdlib_dir();
    return run_vm("/usr/bin/python3", args, input, {"--mem-mib", "256", "--tree", lib + ":" + lib});
  }
  // /usr/lib/python3.N of the python3 Debian installed (/usr/bin/python3 -> python3.N).
  static std::string stdlib_dir() {
    char target[64] = {};
    const ssize_t n = ::readlink("/usr/bin/python3", target, sizeof target - 1);
    return "/usr/lib/" + std::string(n > 0 ? target : "python3.11", n > 0 ? static_cast<size_t>(n) : 10);
  }
};

TEST_F(DebianPrograms, Python3WithItsStandardLibrary) {
  const std::string code =
      "import json, re, hashlib, sys, os\n"
      "print(json.dumps({'x': [1, 2]}, sort_keys=True))\n"
      "print(re.sub('a+', 'b', 'caaat'), hashlib.sha256(b'abc').hexdigest()[:16])\n"
      "print(sys.version_info[:2] >= (3, 9), os.path.join('a', 'b'), sys.argv[1:])\n"
      "print(sum(int(l) for l in sys.stdin))\n";
  auto r = python({"-c", code, "one", "two"}, "1\n2\n39\n");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "{\"x\": [1, 2]}\ncbt ba7816bf8f01cfea\nTrue a/b ['one', 'two']\n42\n");
}

TEST_F(DebianPrograms, Sqlite3InMemory) {
  auto r = run_vm("/usr/bin/sqlite3", {"-batch", ":memory:"},
                  "create table t(k text, v int); insert into t values ('a', 1), ('b', 41);\n"
                  "select group_concat(k, '+'), sum(v) from t;\n");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "a+b|42\n");
}

TEST_F(DebianPrograms, Lua54) {
  auto r = run_vm("/usr/bin/lua5.4", {"-e", "print(_VERSION, #arg, string.format('%5.2f', math.pi))", "-", "x"},
                  "io.write(io.read('a'):upper())", {});
  // `-` runs stdin as the script (arg = {"x"}); the script was all of stdin,
  // so it finds nothing left to upper-case.
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "Lua 5.4\t1\t 3.14\n");
}

// Debian's busybox-static: what ps, free and friends read (/proc, /dev).
TEST_F(DebianPrograms, BusyboxReadsProcAndDev) {
  auto status = run_vm("/bin/busybox", {"cat", "/proc/self/status"});
  ASSERT_EQ(status.status, 0) << status.err;
  EXPECT_NE(status.out.find("Name:\tbusybox\n"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("\nPid:\t1\n"), std::string::npos) << status.out;
  auto ls = run_vm("/bin/busybox", {"ls", "/", "/proc", "/dev"});
  ASSERT_EQ(ls.status, 0) << ls.err;
  for (const char* name : {"\nproc\n", "\nsys\n", "\nself\n", "\ncpuinfo\n", "\nnull\n", "\nurandom\n"})
    EXPECT_NE(ls.out.find(name), std::string::npos) << name << " in " << ls.out;
  auto free = run_vm("/bin/busybox", {"free"});
  ASSERT_EQ(free.status, 0) << free.err;
  EXPECT_NE(free.out.find("Mem:         131072"), std::string::npos) << free.out;  // 128 MiB
  auto fd0 = run_vm("/bin/busybox", {"cat", "/dev/fd/0"}, "through fd 0\n");
  EXPECT_EQ(fd0.out, "through fd 0\n") << fd0.err;
  auto full = run_vm("/bin/busybox", {"sh", "-c", "echo x > /dev/full"});
  EXPECT_NE(full.status, 0);
  EXPECT_NE(full.err.find("No space left on device"), std::string::npos) << full.err;
  auto ro = run_vm("/bin/busybox", {"sh", "-c", "echo 1 > /proc/sys/vm/overcommit_memory"});
  EXPECT_NE(ro.status, 0);
}

TEST_F(DebianPrograms, PythonLearnsItsMachine) {
  auto r = python({"-c", "import os, platform; print(os.cpu_count(), platform.system(), platform.release(), "
                         "open('/proc/sys/kernel/osrelease').read().strip(), os.uname().nodename)"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "1 Linux 6.1.0-ember 6.1.0-ember ember\n");
}

TEST_F(DebianPrograms, PythonWritesFilesAsOnLinux) {
  const std::string code =
      "import os, tempfile, shutil, json, sqlite3\n"
      "d = tempfile.mkdtemp()\n"
      "p = os.path.join(d, 'a.txt')\n"
      "with open(p, 'w') as f: f.write('hello\\n')\n"
      "with open(p, 'a') as f: f.write('world\\n')\n"
      "print(open(p).read().split())\n"
      "os.makedirs(os.path.join(d, 'x/y/z'))\n"
      "os.rename(p, os.path.join(d, 'x/y/z/b.txt'))\n"
      "print(sorted(os.listdir(d)), os.listdir(os.path.join(d, 'x/y/z')))\n"
      "st = os.stat(os.path.join(d, 'x/y/z/b.txt')); print(st.st_size, oct(st.st_mode))\n"
      "tmp = os.path.join(d, 'c.json.tmp')\n"
      "with open(tmp, 'w') as f: json.dump({'k': 1}, f)\n"
      "os.replace(tmp, os.path.join(d, 'c.json'))\n"
      "print(json.load(open(os.path.join(d, 'c.json'))))\n"
      "try: os.rmdir(os.path.join(d, 'x'))\n"
      "except OSError as err: print('rmdir:', err.strerror)\n"
      "shutil.rmtree(d); print(os.path.exists(d))\n"
      "with tempfile.TemporaryFile() as t: t.write(b'abc'); t.seek(0); print(t.read())\n"
      "db = sqlite3.connect('/tmp/t.db'); db.execute('create table t(x)'); db.execute('insert into t values (7)')\n"
      "db.commit(); print(db.execute('select x*6 from t').fetchone()[0])\n"
      "try: open(os.__file__, 'w')\n"
      "except OSError as err: print('image:', err.strerror)\n";
  auto r = python({"-c", code});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out,
            "['hello', 'world']\n['x'] ['b.txt']\n12 0o100644\n{'k': 1}\nrmdir: Directory not empty\nFalse\n"
            "b'abc'\n42\nimage: Read-only file system\n");
}

TEST_F(DebianPrograms, Sqlite3OnAFileDatabase) {
  auto r = run_vm("/usr/bin/sqlite3", {"-batch", "/tmp/db.sqlite"},
                  "create table t(k text, v int); insert into t values ('a', 1), ('b', 41);\n"
                  "begin; update t set v = v + 0; commit; pragma integrity_check; select sum(v) from t;\n");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "ok\n42\n");
}

TEST_F(DebianPrograms, ExitStatusAndStderrOfADynamicProgram) {
  auto r = python({"-c", "import sys; sys.stderr.write('oops\\n'); sys.exit(7)"});
  EXPECT_EQ(r.status, 7);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("oops\n"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace ember::testing
