#!/usr/bin/env bash
# Installs the Debian packages Ember needs to build and test. Idempotent:
# prints nothing and touches nothing when every package is already present.
set -euo pipefail

packages=(
  cmake ninja-build g++ make binutils      # the build
  libgtest-dev python3                     # tests (tests/run.py runs them)
  sqlite3 lua5.4 busybox-static            # Debian's own programs, run in VMs by the tests
  musl-tools                               # guest test programs (musl-gcc -static)
  liblua5.4-dev                            # the Lua example function (static liblua5.4.a)
  clang libclang-rt-14-dev                 # libFuzzer targets
  qemu-system-x86 xz-utils                 # boots the guest with real hardware semantics (PVH); kvm-in-qemu
  nlohmann-json3-dev                       # JSON (benchmarks, APIs)
  libseccomp-dev                           # ember-vmm's seccomp filters (compiled to BPF at build time)
  libmicrohttpd-dev                        # the VMM API server (HTTP on a Unix socket, in the event loop)
  libcurl4-openssl-dev curl                # clients of the VMM API (tests, ember-bench, emberd); curl in tests
  libyaml-cpp-dev                          # YAML (api/openapi-vmm.yaml checks, emberd config)
  libcpp-httplib-dev                       # emberd's REST API and the ember CLI (HTTP over TCP)
  prometheus-cpp-dev                       # emberd's /metrics (Prometheus text format)
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
((${#missing[@]} == 0)) && exit 0

sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
