#!/usr/bin/env bash
# virtio-blk device-path benchmark (issue 3): 4 KiB random reads at queue
# depth 32 on a raw file in /dev/shm through the virtio-blk device code
# (bench/blk/blk_bench: VirtioBlock + one io_uring, an in-process driver
# keeping 32 requests in flight) vs `fio --ioengine=io_uring --rw=randread
# --bs=4k --iodepth=32` on the same file, alternating, in the same run.
# The figure of merit is IOPS per CPU-second of each process, all its
# threads counted, io_uring's io-wq workers included: blk_bench's from
# getrusage(RUSAGE_SELF), fio's from /proc/PID/stat over the steady part of
# its run (fio_cpu.py; fio's own usr_cpu/sys_cpu leave the io-wq workers
# out, which on tmpfs do the page copies, so they are printed for reference
# only). Prints the medians and the ratio skiff/fio (target >= 0.9). See
# bench/README.md "virtio-blk".
#
#   bench/blk/run.sh [RUNS] [SECONDS]     (defaults 5 runs of 3 s each)
# Environment: SKIFF_BUILD_DIR [build/main], BLK_BENCH [its blk_bench],
#              BLK_BENCH_FILE [/dev/shm/skiff-blk-bench.raw], SIZE_MIB [256].
# Prints "skipped: <reason>" and exits 77 when something needed is missing.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
runs=${1:-5}
secs=${2:-3}
build=${SKIFF_BUILD_DIR:-$root/build/main}
bench=${BLK_BENCH:-$build/bench/blk/blk_bench}
file=${BLK_BENCH_FILE:-/dev/shm/skiff-blk-bench.raw}
size=${SIZE_MIB:-256}
skip() { echo "skipped: $*"; exit 77; }
[ -x "$bench" ] || skip "$bench missing (skb blk_bench)"
command -v fio >/dev/null || skip "fio not installed (scripts/setup installs it)"
[ -d "$(dirname "$file")" ] || skip "$(dirname "$file") missing"

trap 'rm -f "$file"' EXIT
head -c "$((size << 20))" /dev/urandom >"$file"

fio_run() {
  python3 "$root/bench/blk/fio_cpu.py" "$secs" --name=randread --filename="$file" \
    --ioengine=io_uring --rw=randread --bs=4k --iodepth=32 --norandommap --randrepeat=0
}
skiff_run() {
  "$bench" --file "$file" --seconds "$secs" --depth 32 "$@" |
    sed -E 's/.*wall_s=([0-9.]+) cpu_s=([0-9.]+) iops=([0-9]+) iops_per_cpu_s=([0-9]+).*/\3 \2 \4/'
}

echo "host: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(fio --version)"
echo "file: $file (${size} MiB), 4 KiB random reads, depth 32, ${runs} x ${secs} s each, alternating"
declare -a s_iops s_eff f_iops f_eff f_own y_iops y_eff
for ((i = 0; i < runs; i++)); do
  read -r a _ c < <(skiff_run)
  s_iops+=("$a"); s_eff+=("$c")
  read -r a _ c d < <(fio_run)
  f_iops+=("$a"); f_eff+=("$c"); f_own+=("$d")
  read -r a _ c < <(skiff_run --sync)
  y_iops+=("$a"); y_eff+=("$c")
  echo "run $((i + 1)): skiff io_uring ${s_iops[i]} IOPS ${s_eff[i]}/cpu-s | fio ${f_iops[i]} IOPS ${f_eff[i]}/cpu-s (own accounting ${f_own[i]}) | skiff sync ${y_iops[i]} IOPS ${y_eff[i]}/cpu-s"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
si=$(median "${s_iops[@]}"); se=$(median "${s_eff[@]}")
fi_=$(median "${f_iops[@]}"); fe=$(median "${f_eff[@]}"); fo=$(median "${f_own[@]}")
yi=$(median "${y_iops[@]}"); ye=$(median "${y_eff[@]}")
echo
printf '| path | IOPS | IOPS per CPU-second |\n|---|---|---|\n'
printf '| skiff virtio-blk, io_uring | %s | %s |\n' "$si" "$se"
printf '| fio io_uring | %s | %s (fio own accounting, job thread only: %s) |\n' "$fi_" "$fe" "$fo"
printf '| skiff virtio-blk, synchronous (use_io_uring=false) | %s | %s |\n' "$yi" "$ye"
awk -v a="$se" -v b="$fe" -v c="$si" -v d="$fi_" \
  'BEGIN {printf "ratio skiff/fio: %.2f IOPS per CPU-second (target >= 0.9), %.2f IOPS\n", a / b, c / d}'
