#!/bin/bash
# The benchmarks of the open targets, in one short run on a lent KVM machine
# (its device time is counted in minutes: everything here is prepared, each
# step has its own time limit, the figures land in files as soon as a step
# ends). From the repository root, with the kit made by bench/device/pack.sh:
#
#   bash bench/device/pack.sh                      # here: stripped binaries + libraries
#   bash bench/device/run.sh                       # there, as root; reports in $OUT
#
# The `run` tool of this project's device machines: command
# "bash bench/device/run.sh", carry ["build/device-kit"], timeout_s 600.
#
# Steps (STEPS="machine boot invoke density" by default):
#   machine  CPU, kernel, KVM flavour, cgroup version, limits     machine.txt
#   boot     ember-bench boot -n $BOOT_RUNS --jailed              boot.json
#   invoke   taskset -c 0,1 ember-bench invoke -n $INVOKE_N
#            --clients $CLIENTS (warm, cold, throughput on 2 CPUs) invoke.json
#   density  ember-bench invoke --density $DENSITY (all CPUs)     density.json
#   restore  ember-bench restore and reset -n $SNAP_RUNS          restore.json, reset.json
# Each step's output also goes to STEP.log; a step past its limit is killed
# and the next one runs. Knobs: KIT (build/device-kit), OUT (./device-out),
# BUDGET_S (540: the whole run), and the counts above.
set -uo pipefail

kit=$(realpath "${KIT:-build/device-kit}")
out=${OUT:-$PWD/device-out}
steps=${STEPS:-machine boot invoke density}
budget=${BUDGET_S:-540}
boot_runs=${BOOT_RUNS:-200}
invoke_n=${INVOKE_N:-1000}
clients=${CLIENTS:-32}
density=${DENSITY:-1000,5000,10000}
snap_runs=${SNAP_RUNS:-300}
start=$(date +%s)

die() { echo "run.sh: $*" >&2; exit 1; }
[ -x "$kit/bin/ember-bench" ] || die "$kit/bin/ember-bench is missing: bash bench/device/pack.sh here first, and carry it"
[ "$(id -u)" = 0 ] || die "must run as root (jailed VMs)"
[ -c /dev/kvm ] || die "/dev/kvm is missing: nothing to measure on this machine"
mkdir -p "$out"

# The jailer refuses binaries and kernels below directories that anyone but
# root could change: the kit goes to a root-owned copy.
home=/opt/ember-kit
rm -rf "$home" && mkdir -p "$home" && cp -a "$kit/." "$home/" && chown -R root:root "$home" && chmod -R go-w "$home" ||
  die "cannot install the kit in $home"
export LD_LIBRARY_PATH="$home/lib"
bench="$home/bin/ember-bench"

# Each step gets what is left of the budget, at most its own limit.
step() {
  local name=$1 limit=$2
  shift 2
  local left=$((budget - ($(date +%s) - start)))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 10 ]; then
    echo "== $name: skipped, the budget is spent" | tee -a "$out/summary.txt"
    return
  fi
  echo "== $name (limit ${limit} s): $*" | tee -a "$out/summary.txt"
  local t0=$(date +%s)
  timeout -k 10 "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  echo "   rc $rc after $(($(date +%s) - t0)) s" | tee -a "$out/summary.txt"
  # A killed ember-bench leaves its emberd and VMs behind: the next step needs the machine clean.
  pkill -KILL -x emberd 2>/dev/null; pkill -KILL -x ember-jailer 2>/dev/null; pkill -KILL -x ember-vmm 2>/dev/null
  grep -v '^[[:space:]]*[]{}["]\|^[[:space:]]*$' "$out/$name.log" | tail -40
}

for s in $steps; do
  case $s in
    machine)
      {
        date -u
        uname -a
        grep -m1 'model name' /proc/cpuinfo
        echo "cpus: $(nproc)"
        grep -E 'MemTotal|MemAvailable' /proc/meminfo
        ls -d /sys/module/kvm_pvm /sys/module/kvm_intel /sys/module/kvm_amd 2>/dev/null
        stat -fc 'cgroup fs: %T' /sys/fs/cgroup
        grep cgroup /proc/mounts  # v2's favordynmods makes a process's own cgroup move cheap
        echo "kernel command line: $(cat /proc/cmdline)"  # debugfs=off saves KVM's debugfs files per VM
        for k in kernel.pid_max kernel.threads-max vm.max_map_count; do echo "$k = $(sysctl -n $k)"; done
        echo "ulimit -n: $(ulimit -n) (hard $(ulimit -Hn))"
        "$home/bin/ember-vmm" run "$home/guest-programs/hello-musl" && echo "sanity: ember-vmm run hello-musl ok"
      } > "$out/machine.txt" 2>&1
      cat "$out/machine.txt"
      ;;
    boot) step boot 90 "$bench" boot -n "$boot_runs" --jailed --json "$out/boot.json" ;;
    invoke) step invoke 150 taskset -c 0,1 "$bench" invoke -n "$invoke_n" --clients "$clients" --json "$out/invoke.json" ;;
    density)
      # 10,000 VMs are ~30,000 tasks: emberd names the sysctl when they are too few.
      [ "$(sysctl -n kernel.pid_max)" -lt 4194304 ] && sysctl -qw kernel.pid_max=4194304
      [ "$(sysctl -n kernel.threads-max)" -lt 100000 ] && sysctl -qw kernel.threads-max=100000
      ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
      step density 400 "$bench" invoke -n 10 --clients 16 --seconds 1 --density "$density" --json "$out/density.json"
      ;;
    restore)
      step restore 60 "$bench" restore -n "$snap_runs" --json "$out/restore.json"
      step reset 60 "$bench" reset -n "$snap_runs" --json "$out/reset.json"
      ;;
    *) die "unknown step $s (machine boot invoke density restore)" ;;
  esac
done
echo "run.sh: done in $(($(date +%s) - start)) s; reports in $out"
