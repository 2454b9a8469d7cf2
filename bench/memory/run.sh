#!/usr/bin/env bash
# Guest RAM benchmark: the mem_walk test guest (tests/guests/mem_walk.c)
# chases pointers through a 256 MiB buffer, one random 4 KiB page per load,
# at CPL 3, under skiff and under QEMU, each with and without 2 MiB huge
# pages backing guest RAM:
#   skiff --memory size=512M[,hugepages=on]
#   qemu  -object memory-backend-memfd,size=512M,share=on[,hugetlb=on,hugetlbsize=2M]
# ns per access = (wall time of a long walk - wall time of a short walk) /
# (step difference), so boot, set-up and exit cancel out. Prints one line
# per VMM and backing, then the ratios (huge/plain within each VMM, skiff/QEMU
# for each backing). The huge page pool is grown here and put back.
#
#   bench/memory/run.sh [REPEATS]      (best of REPEATS runs each, default 3)
#
# Environment (defaults in brackets):
#   SKIFF_BUILD_DIR  build tree [build/main]
#   SKIFF            skiff binary [$SKIFF_BUILD_DIR/src/cli/skiff]
#   GUEST_ELF        [$SKIFF_BUILD_DIR/tests/guests/mem_walk.pvh.elf]
#   QEMU             [qemu-system-x86_64]
#   QEMU_CPU         [host,-arch-capabilities]
#   STEPS            steps of the long walk [50000000]; the short one is 1000
# Prints "skipped: <reason>" and exits 77 when something needed is missing.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
repeats=${1:-3}
case "$repeats" in -h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
case "$repeats" in *[!0-9]* | '') echo "run.sh: REPEATS must be a number" >&2; exit 2 ;; esac
build=${SKIFF_BUILD_DIR:-$root/build/main}
export SKIFF=${SKIFF:-$build/src/cli/skiff}
export GUEST_ELF=${GUEST_ELF:-$build/tests/guests/mem_walk.pvh.elf}
export QEMU=${QEMU:-qemu-system-x86_64}
export QEMU_CPU=${QEMU_CPU:-host,-arch-capabilities}
export STEPS=${STEPS:-50000000} REPEATS=$repeats

skip() { echo "skipped: $*"; exit 77; }
if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then skip "no /dev/kvm (usable by $(id -un))"; fi
[ -x "$SKIFF" ] || skip "skiff binary $SKIFF missing (skb skiff)"
[ -f "$GUEST_ELF" ] || skip "guest $GUEST_ELF missing (skb guest_mem_walk_pvh)"
command -v "$QEMU" >/dev/null || skip "$QEMU is not installed"
pool=/sys/kernel/mm/hugepages/hugepages-2048kB
[ -d $pool ] || skip "this kernel has no 2 MiB huge pages"
old=$(cat $pool/nr_hugepages)
# 512 MiB of guest RAM = 256 pages; one VM at a time.
echo $((old + 256)) >/proc/sys/vm/nr_hugepages 2>/dev/null || skip "cannot grow the huge page pool (needs root)"
trap 'echo "$old" >/proc/sys/vm/nr_hugepages' EXIT
[ "$(cat $pool/free_hugepages)" -ge 256 ] || skip "the kernel could not reserve 256 free 2 MiB pages"

python3 - <<'PY'
import os, re, subprocess, sys, time
skiff, elf, qemu = os.environ["SKIFF"], os.environ["GUEST_ELF"], os.environ["QEMU"]
steps, repeats = int(os.environ["STEPS"]), int(os.environ["REPEATS"])
OK = (0x10 << 1) | 1

def cmd(vmm, huge, n):
    args = f"mib=256 steps={n}"
    if vmm == "skiff":
        mem = "size=512M" + (",hugepages=on" if huge else "")
        return [skiff, "--kernel", elf, "--serial", "tty", "--memory", mem, "--cmdline", args]
    backend = "memory-backend-memfd,id=ram,size=512M,share=on" + (
        ",hugetlb=on,hugetlbsize=2M" if huge else "")
    return [qemu, "-accel", "kvm", "-cpu", os.environ["QEMU_CPU"], "-M", "microvm,memory-backend=ram",
            "-m", "512M", "-object", backend, "-display", "none", "-monitor", "none",
            "-serial", "stdio", "-nodefaults", "-no-reboot",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel", elf, "-append", args]

def timed(vmm, huge, n):
    t = time.monotonic()
    r = subprocess.run(cmd(vmm, huge, n), capture_output=True, text=True, timeout=600)
    dt = time.monotonic() - t
    if r.returncode != OK or "cycle=1" not in r.stdout:
        sys.exit(f"{vmm} hugepages={huge}: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
    return dt

res = {}
for vmm in ("skiff", "qemu"):
    for huge in (False, True):
        best = min(timed(vmm, huge, steps) - timed(vmm, huge, 1000) for _ in range(repeats))
        ns = best * 1e9 / (steps - 1000)
        res[vmm, huge] = ns
        print(f"{vmm:5} {'2M hugetlb' if huge else '4K pages  '}: {ns:7.2f} ns/access")
for vmm in ("skiff", "qemu"):
    print(f"{vmm:5} hugetlb/4K ratio: {res[vmm, True] / res[vmm, False]:.2f}")
for huge in (False, True):
    print(f"skiff/qemu ratio ({'2M hugetlb' if huge else '4K pages'}): "
          f"{res['skiff', huge] / res['qemu', huge]:.2f}")
PY
