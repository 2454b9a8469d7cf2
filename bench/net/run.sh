#!/usr/bin/env bash
# virtio-net benchmarks (bench/README.md "virtio-net"):
#  1. net_bench: skiff's device path (VirtioNet + tap, fake in-process guest
#     driver) vs a host thread on the same tap, tx and rx, 64 B / 1514 B
#     frames and 64 KiB TSO (tx), ratios printed. Needs root (netns, tap).
#  2. skiff vs QEMU with KVM: the virtio_net test guest (ring 3, polling,
#     one frame in flight) exchanging N frames with a raw socket on a tap,
#     under each VMM, vhost off on both, then vhost on on both (the kernel's
#     vhost-net moves the frames for both; virtio_net_test.py fails a skiff
#     run that fell back to its own data path, and the vhost=on round is
#     skipped without /dev/vhost-net). Needs /dev/kvm; prints "skipped: no
#     /dev/kvm" otherwise.
#
#   bench/net/run.sh [--seconds S] [--frames N] [--reps R]
# Paths: SKIFF_BUILD_DIR (default build/main).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${SKIFF_BUILD_DIR:-$root/build/main}
seconds=2 frames=512 reps=3
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --frames) frames=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    *) echo "usage: $0 [--seconds S] [--frames N] [--reps R]" >&2; exit 2 ;;
  esac
done

echo "== device path vs direct tap (net_bench, $seconds s per figure)"
if [ -x "$build/bench/net/net_bench" ]; then
  "$build/bench/net/net_bench" --seconds "$seconds" || echo "net_bench: exit status $?"
else
  echo "skipped: $build/bench/net/net_bench is not built (skb net_bench)"
fi

echo
echo "== skiff vs QEMU: virtio_net guest, $frames frames each way, median of $reps"
if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
  echo "skipped: no /dev/kvm"
  exit 0
fi
elf=$build/tests/guests/virtio_net.pvh.elf
skiff=$build/src/cli/skiff
test=$root/tests/guests/virtio_net_test.py
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A tx rx
for vhost in off on; do
  for vmm in qemu skiff; do
    key=$vmm-$vhost
    opts=(--vmm "$vmm" --elf "$elf" --frames "$frames")
    [ "$vmm" = skiff ] && opts+=(--skiff "$skiff")
    [ "$vhost" = on ] && opts+=(--vhost)
    txs=() rxs=()
    for ((i = 0; i < reps; i++)); do
      out=$(python3 "$test" "${opts[@]}" 2>&1) || { echo "$key: failed or skipped:"; echo "$out" | tail -3; continue 2; }
      line=$(grep '^RATE ' <<<"$out")
      txs+=("$(sed 's/.*tx_frames_per_s=\([0-9]*\).*/\1/' <<<"$line")")
      rxs+=("$(sed 's/.*rx_frames_per_s=\([0-9]*\).*/\1/' <<<"$line")")
    done
    tx[$key]=$(printf '%s\n' "${txs[@]}" | median)
    rx[$key]=$(printf '%s\n' "${rxs[@]}" | median)
    printf '%-12s tx %8s frames/s   rx %8s frames/s\n' "$key" "${tx[$key]}" "${rx[$key]}"
  done
  if [ -n "${tx[skiff-$vhost]:-}" ] && [ -n "${tx[qemu-$vhost]:-}" ]; then
    awk -v a="${tx[skiff-$vhost]}" -v b="${tx[qemu-$vhost]}" -v c="${rx[skiff-$vhost]}" \
      -v d="${rx[qemu-$vhost]}" -v v="$vhost" \
      'BEGIN {printf "skiff/QEMU vhost=%s: tx %.2f  rx %.2f\n", v, a / b, c / d}'
  fi
done
