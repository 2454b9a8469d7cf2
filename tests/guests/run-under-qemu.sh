#!/usr/bin/env bash
# Runs one test guest under QEMU with KVM, the reference VMM for the guests.
#
#   run-under-qemu.sh GUEST_ELF [extra qemu args...]
#
# Prints the guest's serial output on stdout, "qemu exit status: N" on
# stderr, and exits with QEMU's status: (v<<1)|1 when the guest wrote v to
# port 0xf4, 0 for an ACPI poweroff or (with -no-reboot) a reset/triple
# fault, 124 on timeout.
#
# Environment:
#   GUEST_CMDLINE   command line (-append); default empty
#   GUEST_INITRD    file passed with -initrd (a PVH/Multiboot module)
#   QEMU_MACHINE    -M value; default q35 (SeaBIOS, ~3.5 s per boot here);
#                   microvm boots in ~50 ms but has no i8042 and a
#                   HW-reduced ACPI
#   QEMU_SMP        -smp value; default 1
#   QEMU_REBOOT     1 = let the guest reset (no -no-reboot); default 1 for
#                   guests named reboot.*, else 0
#   QEMU_TIMEOUT    seconds; default 60
#   QEMU            binary; default qemu-system-x86_64
#   QEMU_ACCEL      kvm (default) or tcg; tcg runs with -cpu max, for hosts
#                   without /dev/kvm (only tests that say so use it)
#
# -cpu host,-arch-capabilities: on our nested-KVM hosts plain `-cpu host`
# (and `-cpu max`) abort because KVM refuses IA32_ARCH_CAPABILITIES.
set -u

if [ $# -lt 1 ]; then
  echo "usage: $0 GUEST_ELF [extra qemu args...]" >&2
  exit 2
fi
elf=$1
shift
qemu=${QEMU:-qemu-system-x86_64}
name=$(basename "$elf")

reboot=${QEMU_REBOOT:-}
if [ -z "$reboot" ]; then
  case $name in reboot.*) reboot=1 ;; *) reboot=0 ;; esac
fi

accel=${QEMU_ACCEL:-kvm}
cpu=host,-arch-capabilities
[ "$accel" = tcg ] && cpu=max
args=(-accel "$accel" -M "${QEMU_MACHINE:-q35}" -cpu "$cpu" -m 256M
  -smp "${QEMU_SMP:-1}" -display none -monitor none -serial stdio -nodefaults
  -device isa-debug-exit,iobase=0xf4,iosize=0x04 -kernel "$elf")
[ "$reboot" = 1 ] || args+=(-no-reboot)
[ -n "${GUEST_CMDLINE:-}" ] && args+=(-append "$GUEST_CMDLINE")
[ -n "${GUEST_INITRD:-}" ] && args+=(-initrd "$GUEST_INITRD")

timeout "${QEMU_TIMEOUT:-60}" "$qemu" "${args[@]}" "$@"
status=$?
echo "qemu exit status: $status" >&2
exit $status
