// What a process costs the host in memory, from /proc: the benchmarks that
// report memory per VM read it here.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>

namespace ember::bench {

// The "Key: N kB" fields of /proc/PID/smaps_rollup (Rss, Pss,
// Private_Clean, Private_Dirty, Shared_Clean, ...), in KiB; empty when the
// process is gone or the file is unreadable.
std::map<std::string, double> smaps_rollup_kib(pid_t pid);

// The fields of /proc/meminfo (MemAvailable, AnonPages, PageTables,
// SecPageTables, KernelStack, Slab, Percpu, Shmem, ...), in KiB.
std::map<std::string, double> meminfo_kib();

}  // namespace ember::bench
