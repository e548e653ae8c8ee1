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

# stdio over vsock (api/stdio_protocol.h), once ember-vmm has a vsock device:
# the VM's console input is a FIFO that never ends (the program must wait
# for the connection, not see console EOF); ember-vsock-client connects to
# the VM's Unix socket and speaks the framed protocol.
client=$progs/ember-vsock-client
if "$bin/ember-vmm" run --vsock-uds "$work/probe.sock" --help >/dev/null 2>&1; then
  mkfifo "$work/console.fifo"
  exec 7<>"$work/console.fifo"  # a writer that never writes: no data, no EOF
  # vsock_run NAME VM_STATUS CLIENT_LINE IMAGE_ARGS... -- CLIENT_ARGS...; leaves cout/cerr/vout/verr in $work
  vsock_run() {
    local name=$1 want=$2 line=$3
    shift 3
    local img=()
    while [[ $1 != -- ]]; do img+=("$1"); shift; done
    shift
    "$bin/ember-image" pack -o "$work/v.img" "${img[@]}" >/dev/null || { fail "$name: ember-image pack"; return 1; }
    rm -f "$work/v.sock"
    timeout 60 "$bin/ember-vmm" run --timeout-ms 30000 --vsock-uds "$work/v.sock" --image "$work/v.img" \
      <"$work/console.fifo" >"$work/vout" 2>"$work/verr" &
    local vm=$!
    timeout 60 "$client" "$work/v.sock" --out "$work/cout" --err "$work/cerr" "$@" >"$work/cline" 2>"$work/clog"
    local crc=$?
    wait $vm
    local got=$?
    if [[ $got != "$want" ]]; then
      fail "$name: ember-vmm status $got, expected $want; $(head -c 300 "$work/verr")"
      return 1
    fi
    if [[ $crc != 0 ]] || ! grep -q "^$line\$" "$work/cline"; then
      fail "$name: client status $crc, \"$(head -c 200 "$work/cline")\", expected \"$line\"; $(head -c 300 "$work/clog")"
      return 1
    fi
    return 0
  }
  head -c 16777216 /dev/urandom >"$work/big.bin"
  : >"$work/empty.bin"
  for v in musl glibc glibc-pie; do
    e=$progs/stdio_echo-$v
    if vsock_run "vsock echo 16 MiB-$v" 0 "exit code 0" --exec "$e" --arg e --arg echo -- --stdin "$work/big.bin"; then
      cmp -s "$work/big.bin" "$work/cout" || fail "vsock echo 16 MiB-$v: stdout differs ($(stat -c %s "$work/cout") bytes)"
      grep -q '^bytes=16777216$' "$work/cerr" || fail "vsock echo 16 MiB-$v: stderr $(head -c 200 "$work/cerr")"
      [[ ! -s $work/vout ]] || fail "vsock echo 16 MiB-$v: output leaked to the console"
    fi
    if vsock_run "vsock echo 0 bytes-$v" 9 "exit code 9" --exec "$e" --arg e --arg echo --arg 9 -- --stdin "$work/empty.bin"; then
      [[ ! -s $work/cout ]] && grep -q '^bytes=0$' "$work/cerr" || fail "vsock echo 0 bytes-$v: $(head -c 200 "$work/cerr")"
    fi
    if vsock_run "vsock abort-$v" 134 "exit signal 6" --exec "$e" --arg e --arg abort -- --stdin "$work/lines.txt"; then
      cmp -s "$work/lines.txt" "$work/cout" || fail "vsock abort-$v: output before abort lost"
    fi
    if vsock_run "vsock segv-$v" 139 "exit signal 11" --exec "$e" --arg e --arg segv -- --stdin "$work/lines.txt"; then
      cmp -s "$work/lines.txt" "$work/cout" || fail "vsock segv-$v: output before the fault lost"
    fi
  done
  e=$progs/stdio_echo-musl
  head -c 300000 "$work/in.bin" >"$work/small.bin"
  if vsock_run "vsock 1-byte frames" 0 "exit code 0" --exec "$e" --arg e --arg echo -- --stdin "$work/small.bin" --chunk 1; then
    cmp -s "$work/small.bin" "$work/cout" || fail "vsock 1-byte frames: stdout differs"
  fi
  if vsock_run "vsock round trips" 0 "exit code 0" --exec "$e" --arg e --arg lines -- --lines 500 --size 16; then
    echo "vsock $(grep '^round trips' "$work/cline")"
  fi
  # With a vsock device but no connection, the console works as before.
  rm -f "$work/v.sock"
  timeout 60 "$bin/ember-vmm" run --timeout-ms 30000 --vsock-uds "$work/v.sock" "$e" echo 4 \
    <"$work/small.bin" >"$work/vout" 2>"$work/verr"
  got=$?
  [[ $got == 4 ]] && cmp -s "$work/small.bin" "$work/vout" || fail "console with a vsock device: status $got"
  exec 7>&-
else
  echo "note: ember-vmm has no --vsock-uds yet: vsock scenarios skipped"
fi

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
