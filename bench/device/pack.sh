#!/bin/bash
# Packs what bench/device/run.sh needs into one folder that can be carried to
# a machine where nothing can be installed (the lent KVM machines: another
# distribution, no build tools, no network): stripped binaries in the
# build's layout (ember-bench finds emberd, ember-vmm, the guest programs and
# the example images relative to itself) and the shared libraries they load,
# except glibc's own, which the target's newer glibc provides.
#
#   make build && bash bench/device/pack.sh [BUILD [KIT]]   # KIT: BUILD/device-kit
set -euo pipefail

build=${1:-build}
kit=${2:-$build/device-kit}
[ -x "$build/bin/ember-bench" ] || { echo "pack.sh: $build/bin/ember-bench is missing: run make build first" >&2; exit 1; }

rm -rf "$kit"
mkdir -p "$kit/bin" "$kit/lib" "$kit/guest-programs" "$kit/examples"
for b in ember-bench emberd ember ember-vmm ember-jailer ember-image; do
  strip -o "$kit/bin/$b" "$build/bin/$b"
done
# The guest kernel is loaded, not run on the host: copied as built.
cp "$build/bin/ember-guest.elf" "$kit/bin/"
cp "$build"/guest-programs/*-musl "$kit/guest-programs/"
cp "$build"/examples/*.img "$kit/examples/"

# Every shared library the host-side binaries load, glibc's excepted.
for b in "$kit"/bin/ember-bench "$kit"/bin/emberd "$kit"/bin/ember; do
  ldd "$b" | awk '$3 ~ /^\// {print $3}'
done | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|libresolv.so.*|ld-linux*) ;;
    *) cp -L "$lib" "$kit/lib/" ;;
  esac
done

du -sh "$kit" | awk -v k="$kit" '{print "pack.sh: " k " holds " $1 " (a device run carries at most 64 MiB)"}'
