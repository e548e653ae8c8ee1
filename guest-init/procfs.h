// The synthetic files of /proc, /sys and /dev that programs read to learn
// about their machine and themselves (ps, free, Python's os and platform,
// glibc's CPU count, Go's start-up): one table of paths, each a directory
// or a file whose text is rendered when it is read. Read-only; generated
// from the runtime's state, so always current.
#pragma once

#include <stdint.h>

namespace ember::guest {

// What uname(2) and /proc/sys/kernel say, in one place.
inline constexpr char kUtsNodename[] = "ember";
inline constexpr char kUtsRelease[] = "6.1.0-ember";

enum class SynthId : uint16_t {
  kNone = 0,
  // directories
  kProc, kProcSelf, kProcSys, kProcSysKernel, kProcSysKernelRandom, kProcSysVm, kSys, kSysDevices, kSysSystem,
  kSysCpu, kDev,
  // files
  kCpuinfo, kMeminfo, kStat, kUptime, kLoadavg, kMounts, kVersion,
  kSelfStatus, kSelfStat, kSelfStatm, kSelfCmdline, kSelfEnviron, kSelfMaps, kSelfComm,
  kOsrelease, kHostname, kOstype, kBootId, kPidMax, kOvercommit, kCpuOnline, kCpuPossible,
  kDevice,  // a /dev node (files.h's device kinds); listed, never rendered
};

struct SynthEntry {
  const char* path;  // absolute, normalised
  SynthId id;
  bool dir;
};

// The entry at the normalised absolute path [path, path + len), or null.
const SynthEntry* synth_lookup(const char* path, uint32_t len);
const SynthEntry* synth_entry(SynthId id);
// The i-th entry directly inside directory `dir` (i from 0), or null past
// the last; *name/*name_len: its last component.
const SynthEntry* synth_child(SynthId dir, uint32_t i, const char** name, uint32_t* name_len);
// The synthetic directories directly under "/" ("proc", "sys"; "dev" too),
// for listing the root.
const SynthEntry* synth_root_child(uint32_t i, const char** name, uint32_t* name_len);
uint32_t synth_root_count();
// The file's whole text into buf (at most cap bytes, truncated there); its length.
uint64_t synth_render(SynthId id, char* buf, uint64_t cap);

}  // namespace ember::guest
