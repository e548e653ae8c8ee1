#include "guest-init/procfs.h"

#include "guest-init/klib.h"
#include "guest-init/platform.h"
#include "guest-init/runtime.h"

namespace ember::guest {
namespace {

using S = SynthId;

// Parents before children; a directory's children follow it in this order.
constexpr SynthEntry kEntries[] = {
    {"/proc", S::kProc, true},
    {"/proc/self", S::kProcSelf, true},
    {"/proc/self/status", S::kSelfStatus, false},
    {"/proc/self/stat", S::kSelfStat, false},
    {"/proc/self/statm", S::kSelfStatm, false},
    {"/proc/self/cmdline", S::kSelfCmdline, false},
    {"/proc/self/environ", S::kSelfEnviron, false},
    {"/proc/self/maps", S::kSelfMaps, false},
    {"/proc/self/comm", S::kSelfComm, false},
    {"/proc/self/mounts", S::kMounts, false},
    {"/proc/cpuinfo", S::kCpuinfo, false},
    {"/proc/meminfo", S::kMeminfo, false},
    {"/proc/stat", S::kStat, false},
    {"/proc/uptime", S::kUptime, false},
    {"/proc/loadavg", S::kLoadavg, false},
    {"/proc/mounts", S::kMounts, false},
    {"/proc/version", S::kVersion, false},
    {"/proc/sys", S::kProcSys, true},
    {"/proc/sys/kernel", S::kProcSysKernel, true},
    {"/proc/sys/kernel/osrelease", S::kOsrelease, false},
    {"/proc/sys/kernel/hostname", S::kHostname, false},
    {"/proc/sys/kernel/ostype", S::kOstype, false},
    {"/proc/sys/kernel/pid_max", S::kPidMax, false},
    {"/proc/sys/kernel/random", S::kProcSysKernelRandom, true},
    {"/proc/sys/kernel/random/boot_id", S::kBootId, false},
    {"/proc/sys/vm", S::kProcSysVm, true},
    {"/proc/sys/vm/overcommit_memory", S::kOvercommit, false},
    {"/sys", S::kSys, true},
    {"/sys/devices", S::kSysDevices, true},
    {"/sys/devices/system", S::kSysSystem, true},
    {"/sys/devices/system/cpu", S::kSysCpu, true},
    {"/sys/devices/system/cpu/online", S::kCpuOnline, false},
    {"/sys/devices/system/cpu/possible", S::kCpuPossible, false},
    {"/dev", S::kDev, true},
    // Devices (files.h opens them; listed here for /dev).
    {"/dev/null", S::kDevice, false},
    {"/dev/zero", S::kDevice, false},
    {"/dev/full", S::kDevice, false},
    {"/dev/random", S::kDevice, false},
    {"/dev/urandom", S::kDevice, false},
    {"/dev/stdin", S::kDevice, false},
    {"/dev/stdout", S::kDevice, false},
    {"/dev/stderr", S::kDevice, false},
};

uint32_t length(const char* s) { return static_cast<uint32_t>(strlen(s)); }

// Where the last '/' of an entry's path is.
uint32_t last_slash(const char* p) {
  uint32_t at = 0;
  for (uint32_t i = 0; p[i]; i++)
    if (p[i] == '/') at = i;
  return at;
}

// "N.NN" from nanoseconds.
TextBuf& seconds(TextBuf& t, uint64_t ns) {
  const uint64_t cs = ns / 10000000;
  t.udec(cs / 100).ch('.');
  if (cs % 100 < 10) t.ch('0');
  return t.udec(cs % 100);
}

// The program's name as the kernel keeps it (comm: the exec path's last
// component, at most 15 bytes).
void comm(TextBuf& t) {
  const char* p = g_rt.exec_path;
  uint32_t n = g_rt.exec_path_len, start = 0;
  for (uint32_t i = 0; i < n; i++)
    if (p[i] == '/') start = i + 1;
  t.bytes(p + start, n - start > 15 ? 15 : n - start);
}

uint64_t kib(uint64_t bytes) { return bytes / 1024; }


// What the program holds: its segments and brk, its mmap area, its stack reserve.
uint64_t used_bytes() {
  const AddressSpace& m = g_rt.mem;
  return (m.brk_current() - m.low()) + (m.high() - m.mmap_low());
}

void cpu_model(TextBuf& t) {
  char brand[49] = {};
  if (cpuid(0x80000000).eax >= 0x80000004) {
    for (uint32_t i = 0; i < 3; i++) {
      const Cpuid c = cpuid(0x80000002 + i);
      memcpy(brand + 16 * i, &c, 16);
    }
  }
  const char* b = brand;
  while (*b == ' ') b++;
  t.str(*b ? b : "x86-64 CPU");
}

}  // namespace

const SynthEntry* synth_lookup(const char* path, uint32_t len) {
  for (const SynthEntry& e : kEntries)
    if (str_eq(path, len, e.path)) return &e;
  return nullptr;
}

const SynthEntry* synth_entry(SynthId id) {
  for (const SynthEntry& e : kEntries)
    if (e.id == id) return &e;
  return nullptr;
}

const SynthEntry* synth_child(SynthId dir, uint32_t i, const char** name, uint32_t* name_len) {
  const SynthEntry* d = synth_entry(dir);
  if (!d || !d->dir) return nullptr;
  const uint32_t dlen = length(d->path);
  for (const SynthEntry& e : kEntries) {
    if (memcmp(e.path, d->path, dlen) != 0 || e.path[dlen] != '/' || last_slash(e.path) != dlen) continue;
    if (i-- == 0) {
      *name = e.path + dlen + 1;
      *name_len = length(*name);
      return &e;
    }
  }
  return nullptr;
}

const SynthEntry* synth_root_child(uint32_t i, const char** name, uint32_t* name_len) {
  for (const SynthEntry& e : kEntries) {
    if (last_slash(e.path) != 0) continue;
    if (i-- == 0) {
      *name = e.path + 1;
      *name_len = length(*name);
      return &e;
    }
  }
  return nullptr;
}

uint32_t synth_root_count() {
  uint32_t n = 0;
  for (const SynthEntry& e : kEntries) n += last_slash(e.path) == 0;
  return n;
}

uint64_t synth_render(SynthId id, char* buf, uint64_t cap) {
  TextBuf t(buf, cap);
  const abi::BootInfo& bi = g_platform.boot();
  const uint64_t up_ns = g_rt.clock.monotonic_ns();
  switch (id) {
    case S::kCpuinfo:
      t.str("processor\t: 0\nvendor_id\t: ");
      {
        const Cpuid v = cpuid(0);
        char vendor[13] = {};
        memcpy(vendor, &v.ebx, 4);
        memcpy(vendor + 4, &v.edx, 4);
        memcpy(vendor + 8, &v.ecx, 4);
        t.str(vendor);
      }
      t.str("\nmodel name\t: ");
      cpu_model(t);
      t.str("\ncpu MHz\t\t: ").udec(bi.tsc_khz / 1000).str("\ncache size\t: 0 KB\nphysical id\t: 0\nsiblings\t: 1\n"
                                                            "core id\t\t: 0\ncpu cores\t: 1\nbogomips\t: ")
          .udec(bi.tsc_khz / 500).str("\n\n");
      break;
    case S::kMeminfo: {
      const uint64_t total = bi.mem_size, used = used_bytes();
      const uint64_t free = total > used ? total - used : 0;
      t.str("MemTotal:       ").udec(kib(total)).str(" kB\nMemFree:        ").udec(kib(free))
          .str(" kB\nMemAvailable:   ").udec(kib(free)).str(" kB\nBuffers:               0 kB\nCached:                0 kB\n"
                                                          "SwapTotal:             0 kB\nSwapFree:              0 kB\n");
      break;
    }
    case S::kStat: {
      const uint64_t ticks = up_ns / 10000000;  // USER_HZ
      t.str("cpu  ").udec(ticks).str(" 0 0 0 0 0 0 0 0 0\ncpu0 ").udec(ticks).str(" 0 0 0 0 0 0 0 0 0\nbtime ")
          .udec((g_rt.clock.realtime_ns() - up_ns) / 1000000000).str("\nprocesses 1\nprocs_running 1\nprocs_blocked 0\n");
      break;
    }
    case S::kUptime:
      seconds(t, up_ns).ch(' ');
      seconds(t, 0).ch('\n');
      break;
    case S::kLoadavg: t.str("0.00 0.00 0.00 1/1 1\n"); break;
    case S::kMounts: t.str("rootfs / rootfs ro 0 0\nproc /proc proc ro 0 0\nsysfs /sys sysfs ro 0 0\n"); break;
    case S::kVersion: t.str("Linux version ").str(kUtsRelease).str(" (ember) #1 SMP PREEMPT_DYNAMIC Ember\n"); break;
    case S::kSelfStatus: {
      const uint64_t used = used_bytes();
      t.str("Name:\t");
      comm(t);
      t.str("\nUmask:\t0").udec(g_rt.umask >> 6 & 7).udec(g_rt.umask >> 3 & 7).udec(g_rt.umask & 7)
          .str("\nState:\tR (running)\nTgid:\t1\nPid:\t1\nPPid:\t0\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n"
               "FDSize:\t")
          .udec(Files::kMaxFds)
          .str("\nVmSize:\t").udec(kib(used)).str(" kB\nVmRSS:\t").udec(kib(used))
          .str(" kB\nThreads:\t1\nCpus_allowed:\t1\nCpus_allowed_list:\t0\n");
      break;
    }
    case S::kSelfStat:
      // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt
      // majflt cmajflt utime stime cutime cstime priority nice threads
      // itrealvalue starttime vsize rss ...
      t.str("1 (");
      comm(t);
      t.str(") R 0 1 1 0 -1 4194560 0 0 0 0 ").udec(up_ns / 10000000).str(" 0 0 0 20 0 1 0 0 ")
          .udec(used_bytes()).ch(' ').udec(used_bytes() / 4096).str(" 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n");
      break;
    case S::kSelfStatm: {
      const uint64_t pages = used_bytes() / 4096;
      t.udec(pages).ch(' ').udec(pages).str(" 0 0 0 ").udec(pages).str(" 0\n");
      break;
    }
    case S::kSelfCmdline: {
      const image::ImageReader& img = g_rt.image;
      if (img.arg_count() == 0) t.bytes(g_rt.exec_path, g_rt.exec_path_len).ch(0);
      for (uint32_t i = 0; i < img.arg_count(); i++) t.bytes(img.arg(i).data, img.arg(i).size).ch(0);
      break;
    }
    case S::kSelfEnviron:
      for (uint32_t i = 0; i < g_rt.image.env_count(); i++) t.bytes(g_rt.image.env(i).data, g_rt.image.env(i).size).ch(0);
      break;
    case S::kSelfMaps: {
      const AddressSpace& m = g_rt.mem;
      auto line = [&](uint64_t lo, uint64_t hi, const char* perms, const char* what) {
        if (hi <= lo) return;
        t.hex(lo, false, 8).ch('-').hex(hi, false, 8).ch(' ').str(perms).str(" 00000000 00:00 0 ").str(what).ch('\n');
      };
      line(m.low(), m.brk_current(), "rwxp", "[heap]");
      line(m.mmap_low(), m.stack_bottom(), "rwxp", "");
      line(m.stack_bottom(), m.high(), "rw-p", "[stack]");
      break;
    }
    case S::kSelfComm: comm(t); t.ch('\n'); break;
    case S::kOsrelease: t.str(kUtsRelease).ch('\n'); break;
    case S::kHostname: t.str(kUtsNodename).ch('\n'); break;
    case S::kOstype: t.str("Linux\n"); break;
    case S::kPidMax: t.str("32768\n"); break;
    case S::kBootId: {
      // One per boot, and a new one after a restore (another boot as far as
      // the program can tell).
      static uint8_t id[16];
      static uint64_t id_generation = ~0ull;
      if (id_generation != g_platform.generation()) {
        random_bytes(id, sizeof id);
        id_generation = g_platform.generation();
      }
      static const char hex[] = "0123456789abcdef";
      for (uint32_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) t.ch('-');
        t.ch(hex[id[i] >> 4]).ch(hex[id[i] & 15]);
      }
      t.ch('\n');
      break;
    }
    case S::kOvercommit: t.str("0\n"); break;
    case S::kCpuOnline:
    case S::kCpuPossible: t.str("0\n"); break;
    default: break;
  }
  return t.size();
}

}  // namespace ember::guest
