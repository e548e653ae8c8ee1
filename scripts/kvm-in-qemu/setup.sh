#!/usr/bin/env bash
# Prepares scripts/kvm-in-qemu/run.sh on a machine without /dev/kvm: fetches
# Debian's kernel and busybox (apt-get download: Debian's registry only),
# builds an uncompressed kernel and an initramfs (busybox, virtio/9p/kvm
# modules, ./init) in $KVMVM_HOME (default build/kvm-in-qemu). Idempotent.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
H=${KVMVM_HOME:-$here/../../build/kvm-in-qemu}
mkdir -p "$H" && H=$(cd "$H" && pwd)
command -v qemu-system-x86_64 >/dev/null || { echo "kvm-in-qemu: needs qemu-system-x86 (make deps)" >&2; exit 1; }
if [[ ! -d "$H/root/lib/modules" ]]; then
  kernel_package() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
  image=$(kernel_package)
  # A machine whose package lists were never fetched knows no kernel package yet.
  if [[ -z "$image" && $(id -u) -eq 0 ]]; then apt-get update -qq && image=$(kernel_package); fi
  [[ -n "$image" ]] || { echo "kvm-in-qemu: no linux-image package known to apt (apt-get update?)" >&2; exit 1; }
  (cd "$H" && apt-get download -qq "$image" busybox-static)
  for deb in "$H"/*.deb; do dpkg-deb -x "$deb" "$H/root"; done
  rm -f "$H"/*.deb
fi
K=$(ls "$H/root/lib/modules" | head -1)
# The uncompressed ELF (PVH entry): QEMU boots it directly, ~3 s faster under TCG.
python3 - "$H/root/boot/vmlinuz-$K" "$H/vmlinux.tmp" <<'PY'
import lzma, sys
d = open(sys.argv[1], 'rb').read(); i = d.find(b'\xfd7zXZ\x00')
open(sys.argv[2], 'wb').write(lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(d[i:]))
PY
mv "$H/vmlinux.tmp" "$H/vmlinux"
S=$(mktemp -d)
mkdir -p "$S"/{bin,lib/modules,proc,sys,dev,mnt,tmp}
cp "$H/root/bin/busybox" "$S/bin/busybox"
cp "$here/init" "$S/init" && chmod 755 "$S/init"
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci \
         9pnet 9pnet_virtio netfs fscache 9p virtio_console irqbypass kvm ccp kvm-amd; do
  f=$(find "$H/root/lib/modules/$K" -name "$m.ko" -o -name "$m.ko.xz" | head -1)
  [[ -n "$f" ]] || { echo "kvm-in-qemu: module $m missing from $K" >&2; exit 1; }
  case $f in *.xz) xz -dc "$f" > "$S/lib/modules/$m.ko" ;; *) cp "$f" "$S/lib/modules/$m.ko" ;; esac
done
(cd "$S" && find . | "$H/root/bin/busybox" cpio -o -H newc 2>/dev/null) | gzip -1 > "$H/initramfs.cpio.gz.tmp"
mv "$H/initramfs.cpio.gz.tmp" "$H/initramfs.cpio.gz"
rm -rf "$S"
echo "kvm-in-qemu: ready in $H (kernel $K); run: scripts/kvm-in-qemu/run.sh 'COMMAND'"
