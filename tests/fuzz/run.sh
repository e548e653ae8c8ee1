#!/usr/bin/env bash
# run.sh BIN_DIR [SECONDS [TARGET]]
# Runs every libFuzzer target in BIN_DIR (or only TARGET) for SECONDS each, starting from its
# seed corpus in tests/fuzz/corpus/<thing>/ (new inputs go to a scratch dir,
# the committed seeds stay as they are). Fails on the first crash.
set -euo pipefail
bin_dir=$1
seconds=${2:-20}
only=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
found=0
for fuzzer in "$bin_dir"/fuzz_*; do
  [[ -x "$fuzzer" ]] || continue
  found=1
  name=$(basename "$fuzzer")
  [[ -z "$only" || "$name" == "$only" ]] || continue
  thing=${name#fuzz_}
  scratch=$(mktemp -d)
  seeds=()
  [[ -d "$here/corpus/$thing" ]] && seeds+=("$here/corpus/$thing")
  echo "fuzz: $name for ${seconds}s"
  if ! "$fuzzer" -max_total_time="$seconds" -print_final_stats=0 -artifact_prefix="$scratch/" \
       "$scratch" "${seeds[@]}" > "$scratch/log" 2>&1; then
    tail -n 40 "$scratch/log"
    echo "fuzz: $name FAILED; crashing input kept in $scratch" >&2
    exit 1
  fi
  grep -E '^(#[0-9]+ +DONE|Done)' "$scratch/log" | tail -n 1 || true
  rm -rf "$scratch"
done
((found)) || { echo "fuzz: no fuzz targets in $bin_dir" >&2; exit 1; }
