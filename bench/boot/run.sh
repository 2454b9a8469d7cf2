#!/usr/bin/env bash
# Boot-time benchmark: skiff vs QEMU microvm launching the same PVH guest
# that exits on its first instruction (tests/guests/exit_now.S). What it
# measures is VMM start-up + VM creation + guest load + tear-down.
#
#   bench/boot/run.sh [N] [--only skiff|qemu]      (N runs each, default 20)
#   bench/boot/run.sh [N] [--only skiff|qemu] --fake-kvm
#
# --fake-kvm (hosts without /dev/kvm): KVM answered by tests/kvm/fake_kvm.c
# for both VMMs, i.e. each one's own share of the boot (start-up, VM build,
# guest load, tear-down; no kernel KVM work, no guest or firmware code),
# with the issue's targets (5 ms, 4 MiB) and, as the floor, /bin/false
# launched the same way.
#
# Environment (defaults in brackets):
#   SKIFF_BUILD_DIR  build tree [build/main]
#   SKIFF            skiff binary [$SKIFF_BUILD_DIR/src/cli/skiff]
#   GUEST_ELF        guest [$SKIFF_BUILD_DIR/tests/guests/exit_now.pvh.elf]
#   QEMU             [qemu-system-x86_64]
#   QEMU_CPU         [host,-arch-capabilities] (see bench/README.md)
#   RUSAGE_EXEC      launcher [$SKIFF_BUILD_DIR/bench/boot/rusage_exec]
#   FAKE_KVM         [$SKIFF_BUILD_DIR/tests/kvm/libskiff_fake_kvm.so]
# Prints "skipped: <reason>" and exits 77 when something needed is missing.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
runs=20 only= fake=
while (($#)); do
  case "$1" in
  --only) only=${2:?--only needs skiff or qemu}; shift ;;
  --fake-kvm) fake=1 ;;
  -h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *[!0-9]* | '') echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  *) runs=$1 ;;
  esac
  shift
done
case "$only" in '' | skiff | qemu) ;; *) echo "run.sh: --only skiff or qemu" >&2; exit 2 ;; esac

build=${SKIFF_BUILD_DIR:-$root/build/main}
skiff=${SKIFF:-$build/src/cli/skiff}
guest=${GUEST_ELF:-$build/tests/guests/exit_now.pvh.elf}
qemu=${QEMU:-qemu-system-x86_64}
# -cpu host alone aborts on hosts whose KVM refuses MSR_IA32_ARCH_CAPABILITIES
# (kvm_pvm: "failed to set MSR 0x10a"); the guest never reads it.
qemu_cpu=${QEMU_CPU:-host,-arch-capabilities}
launcher=${RUSAGE_EXEC:-$build/bench/boot/rusage_exec}
fake_kvm=${FAKE_KVM:-$build/tests/kvm/libskiff_fake_kvm.so}

skip() { echo "skipped: $*"; exit 77; }
[ -x "$launcher" ] || skip "launcher $launcher missing (build the rusage_exec target, or set RUSAGE_EXEC)"
[ -f "$guest" ] || skip "guest $guest missing (build the tests/guests targets, or set GUEST_ELF)"
if [ -n "$fake" ]; then
  [ -f "$fake_kvm" ] || skip "$fake_kvm missing (build the skiff_fake_kvm target, or set FAKE_KVM)"
elif [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
  skip "/dev/kvm is not usable by $(id -un) (--fake-kvm measures the VMMs' own share without it)"
fi
if [ "$only" != qemu ]; then
  [ -x "$skiff" ] || skip "skiff binary $skiff missing (build it, set SKIFF, or use --only qemu)"
fi
if [ "$only" != skiff ]; then
  command -v "$qemu" >/dev/null || skip "$qemu not found (run scripts/setup)"
fi

# QEMU: microvm with everything the guest does not use turned off (each
# costs set-up time): no option ROMs, legacy timers/PIC/serial/RTC, ACPI.
# The guest is loaded through QEMU's PVH support (ELF note 18). The debug
# exit device sits at skiff's port 0xf4 (src/arch/x86/layout.h), not at
# QEMU's default 0x501. Under the stand-in, QEMU's machine-check set-up
# warns (its MCE capabilities are not all answered), hence -mce there.
[ -z "$fake" ] || qemu_cpu+=",-mce"
machine=microvm,x-option-roms=off,pit=off,pic=off,isa-serial=off,rtc=off,acpi=off
qemu_cmd="$qemu -accel kvm -M $machine -cpu $qemu_cpu -m 128M -nodefaults -no-user-config"
qemu_cmd+=" -nographic -device isa-debug-exit,iobase=0xf4,iosize=4 -kernel $guest"
skiff_cmd="$skiff --kernel $guest --memory size=128M --cpus boot=1 --serial off"

vmms=()
[ "$only" = qemu ] || vmms+=("skiff=$skiff_cmd")
[ "$only" = skiff ] || vmms+=("qemu=$qemu_cmd")
extra=()
if [ -n "$fake" ]; then
  for vmm in "${vmms[@]}"; do extra+=(--env "${vmm%%=*}:LD_PRELOAD=$fake_kvm"); done
  # The floor (any dynamically linked program started the same way) and the targets.
  vmms+=("false=/bin/false")
  extra+=(--target wall=5 --target rss=4)
  echo "KVM faked by $fake_kvm: the VMMs' own share only (no kernel KVM work, no guest code)"
fi
echo "host: $(nproc) cpus, $(uname -r), $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)"
exec python3 "$root/bench/boot/measure.py" --launcher "$launcher" --runs "$runs" --expect-status 1 \
  --silent qemu "${extra[@]}" "${vmms[@]}"
