#!/usr/bin/env python3
"""Runs the virtio_blk test guest (a polling virtio 1.x PCI driver) under
QEMU or skiff with a virtio-blk disk and a virtio-rng, and checks what the
guest read, wrote and printed.

  virtio_pci_test.py --vmm qemu --runner run-under-qemu.sh --elf virtio_blk.pvh.elf
  virtio_pci_test.py --vmm skiff --skiff path/to/skiff --elf virtio_blk.pvh.elf [--readonly]

The same guest passing under QEMU (-device virtio-blk-pci,disable-legacy=on)
is what shows the guest's driver is right. Every expected value comes from
this script's own inputs: a random disk image, a random serial and a random
pattern seed. Exit 0 pass, 1 fail, 77 skipped.
"""
import argparse
import os
import random
import shutil
import string
import subprocess
import sys
import tempfile

SKIP = 77
DISK_BYTES = 64 * 1024


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def pattern(seed):
    """What virtio_blk.c writes to sectors 8-15."""
    return bytes((i * 7 + seed + (i >> 9)) & 0xFF for i in range(4096))


def skip(why):
    print(f"skipped: {why}")
    sys.exit(SKIP)


def values(out, key):
    return [l.rstrip("\r")[len(key) + 1:] for l in out.splitlines() if l.startswith(key + "=")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vmm", choices=["qemu", "skiff"], required=True)
    ap.add_argument("--elf", required=True)
    ap.add_argument("--runner")
    ap.add_argument("--skiff")
    ap.add_argument("--readonly", action="store_true")
    a = ap.parse_args()

    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        skip("/dev/kvm is not accessible")
    if a.vmm == "qemu" and not shutil.which(os.environ.get("QEMU", "qemu-system-x86_64")):
        skip("qemu-system-x86_64 is not installed")

    rnd = random.Random()
    seed = rnd.randrange(1, 1 << 16)
    serial = "".join(rnd.choice(string.ascii_uppercase + string.digits) for _ in range(12))
    with tempfile.TemporaryDirectory() as tmp:
        disk = os.path.join(tmp, "disk.img")
        original = os.urandom(DISK_BYTES)
        with open(disk, "wb") as f:
            f.write(original)
        cmdline = f"seed={seed}"
        if a.vmm == "qemu":
            ro = ",readonly=on" if a.readonly else ""
            cmd = [a.runner, a.elf,
                   "-drive", f"file={disk},format=raw,if=none,id=d0{ro}",
                   "-device", f"virtio-blk-pci,drive=d0,disable-legacy=on,serial={serial}",
                   "-device", "virtio-rng-pci,disable-legacy=on"]
            env = dict(os.environ, GUEST_CMDLINE=cmdline)
        else:
            ro = ",readonly=on" if a.readonly else ""
            cmd = [a.skiff, "--kernel", a.elf, "--cmdline", cmdline, "--serial", "tty",
                   "--disk", f"path={disk},serial={serial}{ro}", "--rng", "src=/dev/urandom"]
            env = dict(os.environ)
        p = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=150)
        out = p.stdout
        with open(disk, "rb") as f:
            after = f.read()

    failures = []

    def expect(cond, what):
        if not cond:
            failures.append(what)

    pci = values(out, "PCI")
    expect(any(v.endswith(":1af4:1042") for v in pci), f"no virtio-blk in PCI list {pci}")
    expect(any(v.endswith(":1af4:1044") for v in pci), f"no virtio-rng in PCI list {pci}")
    expect(values(out, "BLK_CAPACITY") == [str(DISK_BYTES // 512)], "capacity")
    expect(values(out, "BLK_SERIAL") == [serial], f"serial (want {serial})")
    expect(values(out, "BLK_QUEUES") == ["1"], "num_queues (one vCPU: one queue)")
    expect(values(out, "BLK_READ_FNV") == [f"{fnv1a64(original[:4096]):x}"], "sectors 0-7 as read")
    want = pattern(seed)
    if a.readonly:
        # The write must fail with VIRTIO_BLK_S_IOERR and leave the image alone.
        expect("ERROR=write status 1" in out, "write to a read-only disk did not fail with IOERR")
        expect(p.returncode == (0x7E << 1) | 1, f"exit status {p.returncode}, want 253")
        expect(after == original, "read-only image changed")
    else:
        expect(values(out, "BLK_WRITTEN_FNV") == [f"{fnv1a64(want):x}"], "pattern checksum")
        expect(values(out, "BLK_WRITE") == ["ok"], "write + read-back")
        expect(after[4096:8192] == want, "sectors 8-15 on disk are not the pattern")
        expect(after[:4096] == original[:4096] and after[8192:] == original[8192:],
               "bytes outside sectors 8-15 changed")
        expect(values(out, "RNG_LEN") == ["64"], "rng length")
        expect(values(out, "RNG_NONZERO") == ["1"], "rng bytes all zero")
        expect(values(out, "RNG_DIFFERENT") == ["1"], "rng gave the same bytes twice")
        # Used-buffer interrupts through MSI-X reached the guest's LAPIC.
        expect(values(out, "MSIX_BLK_IRR") == ["1"], "blk MSI-X vector not pending in the LAPIC")
        expect(values(out, "MSIX_RNG_IRR") == ["1"], "rng MSI-X vector not pending in the LAPIC")
        expect("VIRTIO_DONE" in out, "guest did not finish")
        expect(p.returncode == (0x10 << 1) | 1, f"exit status {p.returncode}, want 33")
    if failures:
        print(out)
        for f in failures:
            print(f"FAIL: {f}")
        return 1
    print(out)
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
