#!/usr/bin/env python3
"""Legacy INTx end to end: the virtio_blk test guest with msix=0 intx=1
routes the IOAPIC pin its blk function's Interrupt Line names, does its
block requests and checks that the vector reached its LAPIC, that PCI
Status bit 3 showed the pending interrupt and that reading the ISR cleared
it.

  virtio_intx_test.py --vmm qemu --runner run-under-qemu.sh --elf virtio_blk.pvh.elf
  virtio_intx_test.py --vmm skiff --skiff path/to/skiff --elf virtio_blk.pvh.elf

Under skiff the line must also be the GSI the DSDT's _PRT gives slot 1's
INTA# (x86::pci_intx_gsi(1, 0) = 17): the guest then proves that skiff
asserts the GSI it advertises. QEMU (q35, SeaBIOS's ISA IRQ in Interrupt
Line) is the reference for the guest; without /dev/kvm it runs under TCG
and says so. Exit 0 pass, 1 fail, 77 skipped.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

from guest_harness import skip, values, verdict

SKIFF_SLOT1_GSI = "17"  # src/arch/x86/pci_irq.h: 16 + (slot 1 + INTA# 0) mod 4


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vmm", choices=["qemu", "skiff"], required=True)
    ap.add_argument("--elf", required=True)
    ap.add_argument("--runner")
    ap.add_argument("--skiff")
    a = ap.parse_args()
    env = dict(os.environ)
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        if a.vmm == "skiff":
            skip("/dev/kvm is not accessible")
        print("/dev/kvm is not accessible: running the QEMU reference under TCG (-cpu max)")
        env["QEMU_ACCEL"] = "tcg"
    if a.vmm == "qemu" and not shutil.which(env.get("QEMU", "qemu-system-x86_64")):
        skip("qemu-system-x86_64 is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        disk = os.path.join(tmp, "disk.img")
        with open(disk, "wb") as f:
            f.write(os.urandom(64 * 1024))
        cmdline = "seed=3 msix=0 intx=1 rng=0"
        if a.vmm == "qemu":
            cmd = [a.runner, a.elf, "-drive", f"file={disk},format=raw,if=none,id=d0",
                   "-device", "virtio-blk-pci,drive=d0,disable-legacy=on"]
            env["GUEST_CMDLINE"] = cmdline
        else:
            cmd = [a.skiff, "--kernel", a.elf, "--cmdline", cmdline, "--serial", "tty",
                   "--disk", f"path={disk}"]
        p = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=150)
    out = p.stdout
    failures = []
    want = {"BLK_WRITE": "ok", "INTX_STATUS": "1", "INTX_IRR": "1", "INTX_ISR": "1",
            "INTX_STATUS_AFTER": "0"}
    if a.vmm == "skiff":
        want["INTX_LINE"] = SKIFF_SLOT1_GSI
    for key, value in want.items():
        if values(out, key) != [value]:
            failures.append(f"{key}={values(out, key)}, want {value}")
    if p.returncode != (0x10 << 1) | 1:
        failures.append(f"exit status {p.returncode}, want 33")
    print(out)
    return verdict(failures)


if __name__ == "__main__":
    sys.exit(main())
