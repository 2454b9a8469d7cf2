#!/usr/bin/env bash
# Resident memory of an idle VMM process, before any VM exists: skiff
# waiting on its API socket (`skiff --api-socket`, no --kernel) vs QEMU
# waiting on QMP with no machine (`-M none -S`). Needs no /dev/kvm; it shows
# what the VMM itself costs (binary, libraries, threads) apart from guest
# RAM. Prints VmRSS and its anonymous/file split for each, the ratio of the
# medians of N samples (default 5), one fresh process per sample.
#
#   bench/boot/idle_rss.sh [N]      paths: SKIFF_BUILD_DIR (default build/main), QEMU
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${SKIFF_BUILD_DIR:-$root/build/main}
skiff=$build/src/cli/skiff
qemu=${QEMU:-qemu-system-x86_64}
n=${1:-5}
[ -x "$skiff" ] || { echo "skipped: $skiff is not built"; exit 77; }
command -v "$qemu" >/dev/null || { echo "skipped: $qemu is not installed"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# sample CMD...: starts CMD, waits until its socket exists, prints
# "VmRSS RssAnon RssFile" in KiB, stops it.
sample() {
  rm -f "$tmp/sock"
  "$@" >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 200); do [ -S "$tmp/sock" ] && break; sleep 0.01; done
  sleep 0.3  # let start-up threads settle
  awk '/^VmRSS|^RssAnon|^RssFile/ {printf "%s ", $2} END {print ""}' "/proc/$pid/status"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A rss anon file
for vmm in skiff qemu; do
  rows=()
  for ((i = 0; i < n; i++)); do
    if [ $vmm = skiff ]; then
      rows+=("$(sample "$skiff" --api-socket "path=$tmp/sock")")
    else
      rows+=("$(sample "$qemu" -M none -S -nodefaults -nographic -display none \
        -qmp "unix:$tmp/sock,server=on,wait=off")")
    fi
  done
  rss[$vmm]=$(printf '%s\n' "${rows[@]}" | awk '{print $1}' | median)
  anon[$vmm]=$(printf '%s\n' "${rows[@]}" | awk '{print $2}' | median)
  file[$vmm]=$(printf '%s\n' "${rows[@]}" | awk '{print $3}' | median)
  echo "$vmm: VmRSS ${rss[$vmm]} KiB (anon ${anon[$vmm]}, file ${file[$vmm]}), median of $n"
done
awk -v a="${rss[skiff]}" -v b="${rss[qemu]}" 'BEGIN {printf "skiff/qemu VmRSS ratio %.2f\n", a / b}'
