#!/usr/bin/env bash
# skiff vs QEMU on KVM, virtio-blk (issue #3 benchmark 2; bench/README.md
# "virtio-blk in a VM"): the virtio_blk test guest's bench mode — 4 KiB
# random reads, 32 requests in flight, polling at CPL 3, every block's
# contents checked — on the same raw file in /dev/shm, under skiff's
# virtio-blk and QEMU's virtio-blk-pci (iothread, aio=io_uring), one queue,
# runs alternating. Prints each run, the medians and skiff/QEMU (target >= 1.5).
#
#   bench/blk_vm/run.sh [--seconds S] [--reps R] [--mib M]
#
# Paths: SKIFF_BUILD_DIR (default build/main; needs skiff and the guests:
# skb skiff guest_virtio_blk_pvh), QEMU. Without /dev/kvm it prints
# "skipped: no /dev/kvm" and exits 77 (the guest's bench mode itself is
# checked under TCG by ctest -R virtio_pci.bench_mode).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${SKIFF_BUILD_DIR:-$root/build/main}
seconds=5 reps=3 mib=1024
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --mib) mib=$2; shift 2 ;;
    *) echo "usage: $0 [--seconds S] [--reps R] [--mib M]" >&2; exit 2 ;;
  esac
done

if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
  echo "skipped: no /dev/kvm"
  exit 77
fi
elf=$build/tests/guests/virtio_blk.pvh.elf
skiff=$build/src/cli/skiff
for f in "$elf" "$skiff"; do
  [ -e "$f" ] || { echo "skipped: $f is not built (skb skiff guest_virtio_blk_pvh)"; exit 77; }
done
command -v "${QEMU:-qemu-system-x86_64}" >/dev/null || { echo "skipped: no QEMU"; exit 77; }

disk=/dev/shm/skiff-blk-vm-$$.img
trap 'rm -f "$disk"' EXIT
run=(python3 "$root/tests/guests/virtio_blk_bench.py" --elf "$elf" --disk "$disk"
  --mib "$mib" --seconds "$seconds")
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "== 4 KiB random reads, depth 32, ${mib} MiB file in /dev/shm, $seconds s x $reps runs each"
declare -A figs=([skiff]="" [qemu]="")
for ((i = 1; i <= reps; i++)); do
  for vmm in skiff qemu; do
    opts=(--vmm "$vmm")
    if [ "$vmm" = skiff ]; then opts+=(--skiff "$skiff"); else
      opts+=(--runner "$root/tests/guests/run-under-qemu.sh"); fi
    if out=$("${run[@]}" "${opts[@]}" 2>&1); then
      iops=$(sed -n "s/^IOPS $vmm //p" <<<"$out")
      figs[$vmm]+="$iops "
      printf 'run %d  %-6s %10s IOPS\n' "$i" "$vmm" "$iops"
    else
      echo "run $i $vmm failed:"
      tail -5 <<<"$out"
    fi
  done
done
s=$(printf '%s\n' ${figs[skiff]} | median)
q=$(printf '%s\n' ${figs[qemu]} | median)
[ -n "$s" ] && [ -n "$q" ] || { echo "no figures from one of the VMMs"; exit 1; }
printf 'median  skiff  %10s IOPS\n' "$s"
printf 'median  qemu   %10s IOPS\n' "$q"
awk -v s="$s" -v q="$q" 'BEGIN {r = s / q; printf "skiff/QEMU: %.2f (target >= 1.5: %s)\n", r, r >= 1.5 ? "met" : "NOT met"}'
