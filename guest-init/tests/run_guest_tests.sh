#!/usr/bin/env bash
# Runs the guest kernel's scenario programs (built from this folder as
# -musl, -glibc and -glibc-pie) in real microVMs with ember-vmm, and, where
# QEMU is installed, a few of them through the PVH entry under QEMU's
# software emulator (hardware semantics: syscall enters ring 0).
#
# usage: run_guest_tests.sh BIN_DIR PROGRAMS_DIR DATA_DIR
# exit 77 (ctest: skipped) without a usable /dev/kvm.
set -uo pipefail
bin=$1 progs=$2 data=$3
if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
  echo "skipped: /dev/kvm is not usable here"
  exit 77
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/ember-guest-tests.XXXXXX")
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
files=(--file "$data/hello.txt:/data/hello.txt" --file "$data/sub/a.txt:/data/sub/a.txt" --file "$data/sub/b.txt:/data/sub/b.txt")

run() {  # run NAME EXPECTED_STATUS IMAGE_ARGS... ; stdin from $stdin_file (default /dev/null); leaves out/err in $work
  local name=$1 want=$2
  shift 2
  "$bin/ember-image" pack -o "$work/t.img" "$@" >/dev/null || { fail "$name: ember-image pack"; return 1; }
  timeout 60 "$bin/ember-vmm" run --timeout-ms 30000 --image "$work/t.img" <"${stdin_file:-/dev/null}" >"$work/out" 2>"$work/err"
  local got=$?
  if [[ $got != "$want" ]]; then
    fail "$name: status $got, expected $want; stderr: $(head -c 300 "$work/err")"
    return 1
  fi
  return 0
}

for v in musl glibc glibc-pie; do
  p=$progs
  if run "syscalls-$v" 0 --exec "$p/syscalls-$v" "${files[@]}"; then
    grep -q '^fails=0$' "$work/out" || fail "syscalls-$v: $(cat "$work/out")"
  fi
  if run "signals-$v" 0 --exec "$p/signals-$v"; then
    grep -q '^handled 20000 nested 11000$' "$work/out" || fail "signals-$v: $(cat "$work/out")"
  fi
  k=1
  for want in 133 132 136 139 134; do
    run "faults-$v $k" $want --exec "$p/faults-$v" --arg faults --arg $k
    k=$((k + 1))
  done
  if run "crash_output-$v" 139 --exec "$p/crash_output-$v"; then
    [[ $(grep -c '^out line$' "$work/out") == 5 ]] || fail "crash_output-$v: stdout $(cat "$work/out")"
    [[ $(grep -c '^err line$' "$work/err") == 5 ]] || fail "crash_output-$v: stderr $(cat "$work/err")"
  fi
done

# stdio_echo over the console (the same program runs over vsock below).
head -c 3000000 /dev/urandom >"$work/in.bin"
printf 'one\ntwo\nthree\n' >"$work/lines.txt"
for v in musl glibc glibc-pie; do
  e=$progs/stdio_echo-$v
  if stdin_file=$work/in.bin run "console echo-$v" 5 --exec "$e" --arg stdio_echo --arg echo --arg 5; then
    cmp -s "$work/in.bin" "$work/out" || fail "console echo-$v: stdout differs from stdin ($(stat -c %s "$work/out") bytes)"
    grep -q '^bytes=3000000$' "$work/err" || fail "console echo-$v: stderr $(head -c 200 "$work/err")"
  fi
  if stdin_file=$work/lines.txt run "console lines-$v" 0 --exec "$e" --arg stdio_echo --arg lines; then
    cmp -s "$work/lines.txt" "$work/out" || fail "console lines-$v: $(cat "$work/out")"
  fi
  stdin_file=$work/lines.txt run "console abort-$v" 134 --exec "$e" --arg stdio_echo --arg abort &&
    { cmp -s "$work/lines.txt" "$work/out" || fail "console abort-$v: output before abort lost"; }
  stdin_file=$work/lines.txt run "console segv-$v" 139 --exec "$e" --arg stdio_echo --arg segv &&
    { cmp -s "$work/lines.txt" "$work/out" || fail "console segv-$v: output before the fault lost"; }
done

# PVH under QEMU TCG: the same kernel booted by another VMM, ring-0 syscalls.
if command -v qemu-system-x86_64 >/dev/null; then
  pvh() {  # pvh NAME IMAGE_ARGS... ; status decoded from isa-debug-exit
    local name=$1
    shift
    "$bin/ember-image" pack -o "$work/p.img" "$@" >/dev/null || { fail "$name: pack"; return 1; }
    timeout 120 qemu-system-x86_64 -accel tcg -M microvm,acpi=off,pit=off,pic=off,isa-serial=off \
      -global virtio-mmio.force-legacy=false -m 256M -nodefaults -no-user-config -nographic -no-reboot \
      -kernel "$bin/ember-guest.elf" -initrd "$work/p.img" -device isa-debug-exit,iobase=0xf4,iosize=4 \
      -chardev file,id=c0,path="$work/pout" -chardev file,id=c1,path="$work/perr" \
      -device virtio-serial-device,id=vs0 -device virtconsole,chardev=c0,bus=vs0.0 \
      -device virtio-serial-device,id=vs1 -device virtconsole,chardev=c1,bus=vs1.0 </dev/null >/dev/null 2>&1
    local rc=$?
    # isa-debug-exit: QEMU exits with ((status << 1) | 1) & 0xff.
    (( rc & 1 )) || { fail "$name under QEMU: exit $rc (not through isa-debug-exit)"; return 1; }
    pvh_status=$(( (rc - 1) / 2 ))
  }
  for v in musl glibc glibc-pie; do
    if pvh "pvh syscalls-$v" --exec "$progs/syscalls-$v" "${files[@]}"; then
      [[ $pvh_status == 0 ]] && grep -q '^fails=0$' "$work/pout" || fail "pvh syscalls-$v: status $pvh_status, $(cat "$work/pout")"
    fi
  done
  if pvh "pvh signals-glibc" --exec "$progs/signals-glibc"; then
    grep -q '^handled 20000 nested 11000$' "$work/pout" || fail "pvh signals-glibc: $(cat "$work/pout")"
  fi
  if pvh "pvh crash_output-musl" --exec "$progs/crash_output-musl"; then
    [[ $pvh_status == $((139 & 127)) && $(grep -c '^err line$' "$work/perr") == 5 ]] ||
      fail "pvh crash_output-musl: status $pvh_status, stderr $(cat "$work/perr")"
  fi
else
  echo "note: qemu-system-x86_64 not installed: PVH runs skipped"
fi

if ((failures)); then
  echo "$failures guest scenario(s) failed"
  exit 1
fi
echo "all guest scenarios passed"
