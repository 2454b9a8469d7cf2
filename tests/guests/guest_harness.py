"""What the test-guest harnesses share (virtio_*_test.py here,
tests/memory/skiff_memory_test.py): the CTest skip convention, the guests'
KEY=VALUE output, and the QEMU reference command line (KVM when /dev/kvm is
usable, else TCG, said in the output so a log shows which one ran).
"""
import os
import shutil
import sys

SKIP = 77  # CTest SKIP_RETURN_CODE of every harness


def skip(why):
    print(f"skipped: {why}")
    sys.exit(SKIP)


def fail(why):
    print(f"FAIL: {why}")
    sys.exit(1)


def values(out, key):
    """Every value a guest printed as KEY=VALUE, in order."""
    return [l.rstrip("\r")[len(key) + 1:] for l in out.splitlines() if l.startswith(key + "=")]


def have_kvm():
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


def qemu_binary():
    """$QEMU or qemu-system-x86_64; a skip when it is not installed."""
    qemu = os.environ.get("QEMU", "qemu-system-x86_64")
    if not shutil.which(qemu):
        skip("qemu-system-x86_64 is not installed")
    return qemu


def qemu_accel():
    if have_kvm():
        return ["-accel", "kvm", "-cpu", "host,-arch-capabilities"]
    print("note: /dev/kvm is not available; QEMU runs the guest with -accel tcg -cpu max")
    return ["-accel", "tcg", "-cpu", "max"]


def qemu_command(elf, append, *extra, machine="q35", mem="256M", qemu=None):
    """QEMU booting test guest `elf` with command line `append`: one CPU, the
    serial port on stdout, no default devices, isa-debug-exit at 0xf4 (exit
    status (v << 1) | 1), then `extra` arguments (the devices under test)."""
    return [qemu or qemu_binary(), *qemu_accel(), "-M", machine, "-m", mem, "-smp", "1",
            "-display", "none", "-monitor", "none", "-serial", "stdio", "-nodefaults",
            "-no-reboot", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-kernel", elf, "-append", append, *extra]


def verdict(failures):
    """Prints every failure and PASS when there is none; the exit code."""
    for f in failures:
        print(f"FAIL: {f}")
    if failures:
        return 1
    print("PASS")
    return 0
