#!/usr/bin/env bash
# qcow2 benchmark: the block library on a fully allocated qcow2 image vs the
# same bytes as a raw file (same run), and vs `qemu-img bench` on the same
# qcow2 with the same access pattern. See bench/README.md, section "qcow2".
#
#   bench/qcow2/run.sh [--disk DIR] [qcow2_bench options]
#
# Runs once with the images in /dev/shm (tmpfs: measures the format's CPU
# cost, not a device), and once more in DIR with --disk. qcow2_bench options:
# --size-mib N [256], --seconds S [0.25], --reps N [8], --cluster-size BYTES
# [65536], --no-qemu-img.
# Environment: SKIFF_BUILD_DIR build tree [build/main],
#              QCOW2_BENCH binary [$SKIFF_BUILD_DIR/bench/qcow2/qcow2_bench].
# Prints "skipped: <reason>" and exits 77 when something needed is missing.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
disk=
args=()
while (($#)); do
  case "$1" in
  --disk) disk=${2:?--disk needs a directory}; shift ;;
  -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) args+=("$1") ;;
  esac
  shift
done

build=${SKIFF_BUILD_DIR:-$root/build/main}
bench=${QCOW2_BENCH:-$build/bench/qcow2/qcow2_bench}
skip() { echo "skipped: $*"; exit 77; }
[ -x "$bench" ] || skip "$bench missing (cmake --build $build --target qcow2_bench)"
[ -d /dev/shm ] || skip "/dev/shm missing"
if ! command -v qemu-img >/dev/null; then
  echo "qemu-img not found: comparing raw and qcow2 only (apt install qemu-utils)"
  args+=(--no-qemu-img)
fi

echo "host: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(qemu-img --version 2>/dev/null | head -1)"
"$bench" --dir /dev/shm --size-mib 256 "${args[@]}"
if [ -n "$disk" ]; then
  echo
  "$bench" --dir "$disk" --size-mib 256 "${args[@]}"
fi
