#!/usr/bin/env bash
# `make demo`: starts emberd with its built-in defaults (state in a temporary
# directory, any free port), deploys the bundled example functions with the
# `ember` CLI, invokes each through the HTTP API, shows the answers and how
# long they took, and stops emberd.
set -euo pipefail
bin=$(cd "${1:-build/bin}" && pwd)
examples="$bin/../examples"

if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
  echo "demo: /dev/kvm is not usable here; Ember needs KVM to run microVMs" >&2
  exit 1
fi

state=$(mktemp -d /tmp/ember-demo-XXXXXX)
emberd_pid=
stop_emberd() {
  if [[ -n "$emberd_pid" ]]; then
    kill "$emberd_pid" 2>/dev/null || true
    wait "$emberd_pid" 2>/dev/null || true
    emberd_pid=
  fi
}
trap 'stop_emberd; rm -rf "$state"' EXIT

ember() { "$bin/ember" "$@"; }
field() {  # field NAME JSON: a number from `ember --json` output
  grep -o "\"$1\":[0-9]*" <<<"$2" | head -1 | cut -d: -f2
}
ms() { awk -v us="$1" 'BEGIN { printf "%.2f ms", us / 1000 }'; }

# start_emberd DIR [emberd options...]
start_emberd() {
  local dir=$1
  shift
  mkdir -p "$dir"
  "$bin/emberd" --state-dir "$dir" --listen 127.0.0.1:0 --log-level warn "$@" 2>"$dir.log" &
  emberd_pid=$!
  for _ in $(seq 1 500); do
    [[ -s "$dir/emberd.addr" ]] && break
    if ! kill -0 "$emberd_pid" 2>/dev/null; then
      echo "demo: emberd did not start:" >&2
      cat "$dir.log" >&2
      exit 1
    fi
    sleep 0.01
  done
  export EMBER_URL=$(cat "$dir/emberd.addr")
  local health
  health=$(curl -s "$EMBER_URL/healthz" 2>/dev/null || true)
  mechanism=$(grep -o '"mechanism": *"[a-z]*"' <<<"$health" | sed 's/.*"\([a-z]*\)"$/\1/')
  jailed=$(grep -q '"jailed": *true' <<<"$health" && echo jailed || echo unjailed)
  echo "emberd at $EMBER_URL: $mechanism mechanism, $jailed VMs"
  grep -v "RLIMIT_NOFILE\|pid_max\|threads-max" "$dir.log" | sed 's/^emberd: [^ ]* warn: /  note: /' || true
}

# demo NAME IMAGE INPUT: deploy, invoke once (shown), then 20 more (timed).
demo() {
  local name=$1 image=$2 input=$3 out status=0 json durations p50
  echo
  echo "== $name"
  ember deploy "$name" "$image" --pool 2 2>/dev/null | sed 's/^/   /'
  out=$(printf '%s' "$input" | ember invoke "$name") || status=$?
  printf '%s\n' "$out" | sed 's/^/   | /'
  [[ $status -eq 0 ]] || { echo "demo: $name exited with status $status" >&2; return 1; }
  durations=()
  for _ in $(seq 1 20); do
    json=$(printf '%s' "$input" | ember --json invoke "$name")
    durations+=("$(field duration_us "$json")")
  done
  p50=$(printf '%s\n' "${durations[@]}" | sort -n | sed -n 10p)
  echo "   20 more invocations: p50 $(ms "$p50") inside emberd (request in, answer out)"
}

all_examples() {
  demo echo "$examples/echo.img" "hello from the host"
  demo primes "$examples/primes.img" $'1000\n1000000\n33554431\n'
  demo lua "$examples/lua.img" "the quick brown fox jumps over the lazy dog the fox"
  echo
  ember ls
}

# emberd exactly as it comes: no configuration file.
start_emberd "$state/a"
all_examples
stop_emberd

echo
echo "demo: all example functions answered; emberd stopped"
