#!/usr/bin/env bash
# `make demo`: runs each bundled example function in a fresh microVM with
# ember-vmm and shows its answer and how long the whole run took.
set -euo pipefail
bin=$(cd "${1:-build/bin}" && pwd)
examples="$bin/../examples"
vmm="$bin/ember-vmm"

if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
  echo "demo: /dev/kvm is not usable here; Ember needs KVM to run microVMs" >&2
  exit 1
fi

run() {  # name image input
  local name=$1 image=$2 input=$3 start end out status=0
  start=$(date +%s%N)
  out=$(printf '%s' "$input" | "$vmm" run --image "$image") || status=$?
  end=$(date +%s%N)
  printf '== %s  (exit %d, %s ms whole process: new VM, boot, run, exit)\n' "$name" "$status" \
    "$(awk -v ns=$((end - start)) 'BEGIN { printf "%.2f", ns / 1e6 }')"
  printf '%s\n' "$out" | sed 's/^/   /'
  [[ $status -eq 0 ]]
}

run echo "$examples/echo.img" "hello from the host"
run primes "$examples/primes.img" $'1000\n1000000\n33554431'
run lua "$examples/lua.img" "the quick brown fox jumps over the lazy dog the fox"
echo "demo: all example functions answered"
