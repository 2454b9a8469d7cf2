#!/usr/bin/env python3
"""Runs the virtio_blk test guest's bench mode (4 KiB random reads, 32 in
flight, polling at CPL 3) under QEMU or skiff and prints what it measured.

  virtio_blk_bench.py --vmm qemu --runner run-under-qemu.sh --elf virtio_blk.pvh.elf \\
      --disk /dev/shm/x.img [--mib 256] [--seconds 5] [--tcg-ok]
  virtio_blk_bench.py --vmm skiff --skiff path/to/skiff --elf ... --disk ...

The disk (created if missing, or if its size is not --mib MiB) holds its
4 KiB block number in the first 8 bytes of every block, and the guest
checks each read against it (verify=1), so a figure comes only from reads
that returned the right data. Both VMMs get the same file, one queue and
the same guest command line; QEMU gets virtio-blk-pci with an iothread and
aio=io_uring (its fastest configuration), skiff its default --disk.

Output: the guest's BENCH_* lines, then "IOPS <vmm> <n>". Exit 0 when the
guest finished and the figures are consistent (IOPS = REQS / SECONDS within
5 %), 1 otherwise, 77 when the VMM cannot run here (no /dev/kvm: QEMU falls
back to TCG only with --tcg-ok, and says so).
"""
import argparse
import os
import shutil
import struct
import subprocess
import sys

# The guest's KEY=VALUE output and the skip convention, as the functional test.
from guest_harness import skip, values

BLOCK = 4096


def make_disk(path, mib):
    want = mib << 20
    if os.path.exists(path) and os.path.getsize(path) == want:
        with open(path, "rb") as f:
            f.seek(want - BLOCK)
            if struct.unpack("<Q", f.read(8))[0] == want // BLOCK - 1:
                return
    with open(path, "wb") as f:
        chunk = 256  # blocks per write
        for first in range(0, want // BLOCK, chunk):
            buf = bytearray(BLOCK * chunk)
            for i in range(chunk):
                struct.pack_into("<Q", buf, i * BLOCK, first + i)
            f.write(buf)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vmm", choices=["qemu", "skiff"], required=True)
    ap.add_argument("--elf", required=True)
    ap.add_argument("--disk", required=True)
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--runner")
    ap.add_argument("--skiff")
    ap.add_argument("--tcg-ok", action="store_true")
    a = ap.parse_args()

    env = dict(os.environ)
    have_kvm = os.access("/dev/kvm", os.R_OK | os.W_OK)
    if a.vmm == "qemu":
        if not shutil.which(os.environ.get("QEMU", "qemu-system-x86_64")):
            skip("qemu-system-x86_64 is not installed")
        if not have_kvm:
            if not a.tcg_ok:
                skip("no /dev/kvm")
            print("/dev/kvm is not accessible: running QEMU under TCG (-cpu max); "
                  "the figure proves the guest, it is not a benchmark")
            env["QEMU_ACCEL"] = "tcg"
    elif not have_kvm:
        skip("no /dev/kvm")

    make_disk(a.disk, a.mib)
    cmdline = f"bench={a.seconds} verify=1 seed={os.getpid()}"
    if a.vmm == "qemu":
        cmd = [a.runner, a.elf,
               "-object", "iothread,id=io0",
               "-drive", f"file={a.disk},format=raw,if=none,id=d0,aio=io_uring",
               "-device", "virtio-blk-pci,drive=d0,disable-legacy=on,iothread=io0,"
               "num-queues=1,queue-size=256"]
        env["GUEST_CMDLINE"] = cmdline
        env.setdefault("QEMU_TIMEOUT", str(a.seconds + 60))
    else:
        cmd = [a.skiff, "--kernel", a.elf, "--cmdline", cmdline, "--serial", "tty",
               "--disk", f"path={a.disk},num_queues=1,queue_size=256"]
    p = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=a.seconds + 120)
    out = p.stdout
    print("\n".join(l for l in out.splitlines() if l.startswith(("BENCH_", "ERROR", "skiff"))))
    failures = []
    if p.returncode != (0x10 << 1) | 1 or "VIRTIO_DONE" not in out:
        failures.append(f"guest did not finish (exit status {p.returncode})")
    try:
        iops = int(values(out, "BENCH_IOPS")[0])
        reqs = int(values(out, "BENCH_REQS")[0])
        secs = int(values(out, "BENCH_SECONDS")[0])
        if values(out, "BENCH_DEPTH") != ["32"]:
            failures.append("queue depth is not 32")
        if secs != a.seconds:
            failures.append(f"guest measured {secs} s, asked {a.seconds}")
        if iops <= 0 or abs(iops - reqs / secs) > 0.05 * iops:
            failures.append(f"IOPS {iops} does not match {reqs} requests in {secs} s")
    except (IndexError, ValueError):
        failures.append("no BENCH_IOPS/BENCH_REQS/BENCH_SECONDS lines")
    if failures:
        print(out)
        for f in failures:
            print(f"FAIL: {f}")
        return 1
    print(f"IOPS {a.vmm} {iops}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
