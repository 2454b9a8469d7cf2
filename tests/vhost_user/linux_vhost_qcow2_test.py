#!/usr/bin/env python3
"""Stock Linux reads and writes a qcow2 with a backing file through skiff-vhost
(CTest label "linux"; issue: qcow2 "through virtio-blk").

  linux_vhost_qcow2_test.py <case> --vhost PATH/skiff-vhost --img PATH/skiff-img --workdir DIR

The chain is built by skiff-img (raw base <- qcow2 overlay, or qcow2 base <-
qcow2 middle <- qcow2 overlay); Debian's cloud kernel under QEMU TCG drives
skiff's virtio-blk through vhost-user-blk-pci. The guest checksums what it
reads (the base's random bytes, through the chain) and writes random data at
offsets that start and end inside clusters, so the overlay must copy the rest
of each cluster from its backing file. Afterwards the independent checker
`qemu-img` must find the overlay clean, and `qemu-img convert` of the chain
must hold exactly base + the guest's writes; the backing files must be
untouched.

Exit status: 0 pass, 1 fail, 77 skipped ("skipped: <reason>").
"""

import argparse
import os
import secrets
import shutil
import subprocess
import sys

import linux_vhost_test as lv

MIB = 1 << 20
DISK = 16 * MIB
CLUSTER = 64 * 1024
# (offset, length): both ends inside a cluster, one write spanning clusters.
WRITES = [(CLUSTER + 4096, 8192), (5 * CLUSTER - 4096, 3 * 4096), (9 * MIB + 512 * 3, 512 * 5)]


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return p.returncode, p.stdout


def need_qemu_img():
    if not shutil.which("qemu-img"):
        raise lv.Skipped("qemu-img is not installed (scripts/setup installs qemu-utils)")


def build_chain(img, workdir, depth):
    """Returns (overlay path, base bytes, [backing files])."""
    base_bytes = secrets.token_bytes(DISK)
    base = os.path.join(workdir, "base.raw")
    with open(base, "wb") as f:
        f.write(base_bytes)
    files = [base]
    fmt = "raw"
    if depth == 3:
        qbase = os.path.join(workdir, "base.qcow2")
        rc, out = run([img, "convert", "-f", "raw", "-O", "qcow2", base, qbase])
        lv.check(rc == 0, f"skiff-img convert: {out}")
        mid = os.path.join(workdir, "mid.qcow2")
        rc, out = run([img, "create", "-f", "qcow2", "-o", "backing_file=base.qcow2,backing_fmt=qcow2",
                       mid, str(DISK)])
        lv.check(rc == 0, f"skiff-img create mid: {out}")
        files = [base, qbase, mid]
        fmt = "qcow2"
    top = os.path.join(workdir, "overlay.qcow2")
    backing = os.path.basename(files[-1])
    rc, out = run([img, "create", "-f", "qcow2", "-o",
                   f"cluster_size={CLUSTER},backing_file={backing},backing_fmt={fmt}", top, str(DISK)])
    lv.check(rc == 0, f"skiff-img create overlay: {out}")
    return top, base_bytes, files


def guest_script(workdir):
    lines = [lv.GUEST_LIB]
    lines.append('rsum=$(dd if=/dev/vda bs=1M count=16 2>/dev/null | sha256sum | cut -d" " -f1)')
    for i, (off, length) in enumerate(WRITES):
        lines.append(f"dd if=/dev/urandom of=/tmp/w{i} bs={length} count=1 2>/dev/null")
        lines.append(f"dd if=/tmp/w{i} of=/dev/vda bs=512 seek={off // 512} conv=fsync,notrunc 2>/dev/null"
                     f' || fail "write {i} failed"')
        lines.append(f'w{i}=$(od -An -v -tx1 /tmp/w{i} | tr -d " \\n")')
    lines.append("echo 3 > /proc/sys/vm/drop_caches")
    lines.append('asum=$(dd if=/dev/vda bs=1M count=16 iflag=direct 2>/dev/null | sha256sum | cut -d" " -f1)')
    result = "rsum=$rsum asum=$asum " + " ".join(f"w{i}=$w{i}" for i in range(len(WRITES)))
    lines.append(f'echo "SKIFF-TEST-RESULT: pass {result}"')
    return lv.write_script(workdir, "\n".join(lines) + "\n")


def chain_case(vhost_bin, img, workdir, depth):
    need_qemu_img()
    top, base_bytes, backing = build_chain(img, workdir, depth)
    before = {f: lv.sha256(open(f, "rb").read()) for f in backing}
    v = lv.Vhost(vhost_bin, workdir, ["blk", "--disk", f"path={top}"])
    try:
        got = lv.boot(workdir, guest_script(workdir), [*v.chardev(), "-device", "vhost-user-blk-pci,chardev=c0"])
        lv.check(v.alive(), "skiff-vhost died")
    finally:
        v.stop()

    expect = bytearray(base_bytes)
    for i, (off, length) in enumerate(WRITES):
        data = bytes.fromhex(got.get(f"w{i}", ""))
        lv.check(len(data) == length, f"guest reported {len(data)} bytes for write {i}, want {length}")
        expect[off:off + length] = data
    lv.check(got.get("rsum") == lv.sha256(base_bytes),
             f"guest read {got.get('rsum')} through the chain, base holds {lv.sha256(base_bytes)}")
    lv.check(got.get("asum") == lv.sha256(bytes(expect)),
             f"guest re-read {got.get('asum')} after its writes, want {lv.sha256(bytes(expect))}")

    rc, out = run(["qemu-img", "check", "-f", "qcow2", top])
    lv.check(rc == 0, f"qemu-img check {top}: status {rc}: {out}")
    flat = os.path.join(workdir, "flat.raw")
    rc, out = run(["qemu-img", "convert", "-O", "raw", top, flat])
    lv.check(rc == 0, f"qemu-img convert: {out}")
    with open(flat, "rb") as f:
        lv.check(f.read() == bytes(expect), "qemu-img reads a different chain content than the guest wrote")
    for f in backing:
        lv.check(lv.sha256(open(f, "rb").read()) == before[f], f"backing file {f} changed")


CASES = {
    "qcow2_over_raw_backing": lambda v, i, w: chain_case(v, i, w, 2),
    "qcow2_three_level_chain": lambda v, i, w: chain_case(v, i, w, 3),
}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("case", choices=sorted(CASES))
    p.add_argument("--vhost", required=True)
    p.add_argument("--img", required=True)
    p.add_argument("--workdir", required=True)
    a = p.parse_args()
    workdir = os.path.join(a.workdir, a.case)
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)
    return lv.verdict(lambda: CASES[a.case](a.vhost, a.img, workdir))


if __name__ == "__main__":
    sys.exit(main())
