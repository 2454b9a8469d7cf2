#!/usr/bin/env bash
# Balloon benchmark: RSS reclaimed per second of inflation. See
# bench/README.md, section "Balloon".
#
#   bench/balloon/run.sh [--mib N (256)] [--guest-mib N (512)]
#
# 1. In process (no KVM): balloon_bench drives skiff's VirtioBalloon over
#    real RAM (private anonymous, then a shared memfd) with 256-PFN inflate
#    requests, and measures the host's own discard calls on the same pages
#    in the same run (per 4 KiB page, and per 1 MiB): MiB/s and ratios.
# 2. Guest-driven: the virtio_balloon test guest inflates --guest-mib MiB
#    under QEMU (virtio-balloon-pci, QMP balloon) and under skiff (--balloon,
#    vm.resize); both need /dev/kvm for a fair comparison. Without it QEMU
#    runs under TCG (printed, no ratio) and skiff is skipped.
# Environment: SKIFF_BUILD_DIR build tree [build/main].
# Prints "skipped: <reason>" and exits 77 when the bench binary is missing.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
mib=256
guest_mib=512
while (($#)); do
  case "$1" in
  --mib) mib=${2:?}; shift ;;
  --guest-mib) guest_mib=${2:?}; shift ;;
  -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
build=${SKIFF_BUILD_DIR:-$root/build/main}
bench=$build/bench/balloon/balloon_bench
guest=$build/tests/guests/virtio_balloon.pvh.elf
harness=$root/tests/guests/virtio_balloon_test.py
skip() { echo "skipped: $*"; exit 77; }
[ -x "$bench" ] || skip "$bench missing (skb balloon_bench)"

echo "host: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), kernel $(uname -r)"
"$bench" --mib "$mib"
"$bench" --mib "$mib" --shared

echo
rate() { sed -n 's/^RECLAIM_MIB_PER_S=\([0-9]*\).*/\1/p'; }
if [ ! -f "$guest" ]; then
  echo "guest-driven comparison skipped: $guest missing (skb guest_virtio_balloon_pvh)"
  exit 0
fi
q=$(python3 "$harness" --vmm qemu --mib "$guest_mib" --elf "$guest" | tee /dev/stderr | rate)
if [ ! -w /dev/kvm ]; then
  echo "guest-driven, ${guest_mib} MiB: QEMU under TCG (no /dev/kvm) ${q:-?} MiB/s;" \
    "skiff skipped: /dev/kvm is not available (no ratio)"
  exit 0
fi
s=$(python3 "$harness" --vmm skiff --skiff "$build/src/cli/skiff" --mib "$guest_mib" --elf "$guest" |
  tee /dev/stderr | rate)
echo "guest-driven, ${guest_mib} MiB: skiff ${s:-?} MiB/s, QEMU ${q:-?} MiB/s," \
  "ratio skiff/QEMU $(python3 -c "print(f'{${s:-0}/${q:-1}:.2f}')")"
