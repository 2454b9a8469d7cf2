#!/usr/bin/env python3
"""Stock-Linux-driver tests for skiff-vhost (CTest label "linux").

  linux_vhost_test.py <case> --vhost PATH/skiff-vhost --workdir DIR

Debian's cloud kernel under qemu-system-x86_64 -accel tcg (the harness in
tests/linux/run_qemu_tcg.py) is the independent client: QEMU's
vhost-user-blk-pci / vhost-user-rng-pci front ends talk to skiff-vhost over
its socket, Linux's virtio_blk / virtio_rng drivers drive skiff's device
code. Each case generates its data at run time (random bytes, so a result
cannot be hard-coded), boots the guest with a script, and checks what the
guest printed against what the host wrote, and the image file against what
the guest wrote.

Exit status: 0 pass, 1 fail, 77 skipped ("skipped: <reason>").
"""

import argparse
import hashlib
import os
import re
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "linux"))
import run_qemu_tcg as harness  # noqa: E402

MIB = 1 << 20
DISK_BYTES = 64 * MIB
SECTOR = 512
# vhost-user needs the guest RAM in a shareable fd (specs/vhost-user.rst:
# SET_MEM_TABLE carries one fd per region).
SHARED_RAM = ["-object", "memory-backend-memfd,id=mem,size=512M,share=on", "-numa", "node,memdev=mem"]
TIMEOUT = 240.0


class Failed(Exception):
    pass


class Skipped(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)


class Vhost:
    """A running skiff-vhost; its log is kept for the per-queue counters."""

    def __init__(self, binary, workdir, args):
        # sun_path holds 107 bytes: the socket lives in a short private
        # directory, not under the (arbitrarily deep) build tree.
        self.sockdir = tempfile.mkdtemp(prefix="skiff-vhost-", dir="/tmp")
        self.sock = os.path.join(self.sockdir, "vhost.sock")
        self.log_path = os.path.join(workdir, "skiff-vhost.log")
        self.log = open(self.log_path, "wb")
        cmd = [binary, "-v", args[0], "--socket", self.sock, *args[1:]]
        with open(os.path.join(workdir, "vhost-command"), "w") as f:
            f.write(" ".join(cmd) + "\n")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not self._listening():
            if self.proc.poll() is not None:
                raise Failed(f"skiff-vhost exited {self.proc.returncode}: {self.text()}")
            if time.monotonic() > deadline:
                raise Failed("skiff-vhost did not listen within 10 s")
            time.sleep(0.05)

    def _listening(self):
        if not os.path.exists(self.sock):
            return False
        s = socket.socket(socket.AF_UNIX)
        try:
            # A probe connection is a front end that hangs up at once: it
            # also exercises the back end's reconnect path.
            s.connect(self.sock)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def chardev(self, cid="c0"):
        return ["-chardev", f"socket,id={cid},path={self.sock}"]

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.sockdir, ignore_errors=True)
        return self.proc.returncode

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()
        shutil.rmtree(self.sockdir, ignore_errors=True)

    def text(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def queue_counters(self):
        """The last counter line per queue: {queue: {"reads": n, ...}}."""
        out = {}
        for m in re.finditer(r"blk-q(\d+): (.*)", self.text()):
            out[int(m.group(1))] = {k: int(v) for k, v in (kv.split("=") for kv in m.group(2).split())}
        return out


def make_disk(path, size=DISK_BYTES):
    with open(path, "wb") as f:
        f.truncate(size)


def write_at(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def read_at(path, offset, length):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def write_script(workdir, body):
    path = os.path.join(workdir, "guest.sh")
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body)
    os.chmod(path, 0o755)
    return path


def boot(workdir, script, qemu_args, smp=1):
    res = harness.run(workdir=workdir, script=script, smp=smp, timeout=TIMEOUT,
                      qemu_args=[*SHARED_RAM, *qemu_args])
    if res.status == "skipped":
        raise Skipped(res.reason)
    print(f"{res.status}: {res.reason}; banner after {res.boot_seconds} s; log {res.log}")
    check(res.status == "pass", f"guest run: {res.status}: {res.reason} (log {res.log})")
    return dict(kv.split("=", 1) for kv in res.details.split() if "=" in kv)


def skip_if_unavailable():
    reason = harness.skip_reason(os.path.join(harness.GUEST_DIR, "vmlinuz"),
                                 os.path.join(harness.GUEST_DIR, "initramfs.cpio.gz"))
    if reason:
        raise Skipped(reason)


# Common guest-side helpers: fail() prints the result line and stops.
GUEST_LIB = r"""
fail() { echo "SKIFF-TEST-RESULT: fail $*"; exit 1; }
[ -b /dev/vda ] || fail "no /dev/vda"
"""


def blk_size_serial_and_host_data(vhost_bin, workdir):
    """The guest sees the size and serial skiff-vhost was given and reads
    bytes the host wrote (checksum over 1 MiB at a 3 MiB offset)."""
    disk = os.path.join(workdir, "disk.img")
    make_disk(disk, DISK_BYTES + 7 * SECTOR)  # odd sector count: size is not a round default
    data = secrets.token_bytes(MIB)
    write_at(disk, 3 * MIB, data)
    serial = "sk" + secrets.token_hex(6)
    v = Vhost(vhost_bin, workdir, ["blk", "--disk", f"path={disk},serial={serial}"])
    try:
        script = write_script(workdir, GUEST_LIB + r"""
sum=$(dd if=/dev/vda bs=1M skip=3 count=1 2>/dev/null | sha256sum | cut -d' ' -f1)
echo "SKIFF-TEST-RESULT: pass size=$(cat /sys/block/vda/size) serial=$(cat /sys/block/vda/serial) sum=$sum"
""")
        got = boot(workdir, script, [*v.chardev(), "-device", "vhost-user-blk-pci,chardev=c0"])
        check(v.alive(), "skiff-vhost died")
    finally:
        v.stop()
    want_sectors = (DISK_BYTES + 7 * SECTOR) // SECTOR
    check(got.get("size") == str(want_sectors), f"guest size {got.get('size')}, want {want_sectors}")
    check(got.get("serial") == serial, f"guest serial {got.get('serial')}, want {serial}")
    check(got.get("sum") == sha256(data), f"guest read checksum {got.get('sum')}, host wrote {sha256(data)}")


def blk_guest_writes_reach_image_across_reconnect(vhost_bin, workdir):
    """A first VM writes random data (fsync'ed); it powers off, a second VM
    connects to the same skiff-vhost process (reconnect) and reads the data
    back; after both, the image file holds exactly what the guest wrote."""
    disk = os.path.join(workdir, "disk.img")
    make_disk(disk)
    v = Vhost(vhost_bin, workdir, ["blk", "--disk", f"path={disk}"])
    try:
        w = write_script(workdir, GUEST_LIB + r"""
dd if=/dev/urandom of=/tmp/data bs=64k count=24 2>/dev/null
sum=$(sha256sum /tmp/data | cut -d' ' -f1)
dd if=/tmp/data of=/dev/vda bs=64k seek=80 conv=fsync 2>/dev/null || fail "write failed"
echo "SKIFF-TEST-RESULT: pass sum=$sum"
""")
        wrote = boot(os.path.join(workdir, "write"), w,
                     [*v.chardev(), "-device", "vhost-user-blk-pci,chardev=c0"])
        check(v.alive(), "skiff-vhost died after the first VM")
        r = write_script(workdir, GUEST_LIB + r"""
sum=$(dd if=/dev/vda bs=64k skip=80 count=24 2>/dev/null | sha256sum | cut -d' ' -f1)
echo "SKIFF-TEST-RESULT: pass sum=$sum"
""")
        read = boot(os.path.join(workdir, "read"), r,
                    [*v.chardev(), "-device", "vhost-user-blk-pci,chardev=c0"])
        check(v.alive(), "skiff-vhost died after the second VM")
    finally:
        v.stop()
    host = sha256(read_at(disk, 80 * 65536, 24 * 65536))
    check(wrote.get("sum") == host, f"image holds {host}, the guest wrote {wrote.get('sum')}")
    check(read.get("sum") == host, f"second VM read {read.get('sum')}, image holds {host}")
    check(v.text().count("front end connected") >= 2, "skiff-vhost did not serve two connections")


def blk_multiqueue_from_two_vcpus(vhost_bin, workdir, disk_opts=""):
    """-smp 2 with num-queues=2: Linux creates two blk-mq hardware queues;
    writers pinned to each vCPU put requests on both, and the data of both
    lands in the image. Every request goes through the queues' io_uring."""
    disk = os.path.join(workdir, "disk.img")
    make_disk(disk)
    v = Vhost(vhost_bin, workdir, ["blk", "--disk", f"path={disk},num_queues=2{disk_opts}"])
    try:
        script = write_script(workdir, GUEST_LIB + r"""
nq=$(ls /sys/block/vda/mq | wc -l)
for c in 0 1; do
  dd if=/dev/urandom of=/tmp/d$c bs=64k count=32 2>/dev/null
done
for c in 0 1; do
  taskset -c $c dd if=/tmp/d$c of=/dev/vda bs=4k seek=$((c * 4096)) oflag=direct conv=fsync 2>/dev/null &
done
wait
for c in 0 1; do
  taskset -c $c dd if=/dev/vda of=/dev/null bs=4k skip=$((c * 4096)) count=512 iflag=direct 2>/dev/null &
done
wait
s0=$(sha256sum /tmp/d0 | cut -d' ' -f1)
s1=$(sha256sum /tmp/d1 | cut -d' ' -f1)
echo "SKIFF-TEST-RESULT: pass nq=$nq s0=$s0 s1=$s1"
""")
        got = boot(workdir, script, [*v.chardev(), "-device", "vhost-user-blk-pci,chardev=c0,num-queues=2"],
                   smp=2)
        check(v.alive(), "skiff-vhost died")
    finally:
        v.stop()
    check(got.get("nq") == "2", f"/sys/block/vda/mq has {got.get('nq')} entries, want 2")
    for c in (0, 1):
        host = sha256(read_at(disk, c * 4096 * 4096, 32 * 65536))
        check(got.get(f"s{c}") == host, f"writer {c}: image holds {host}, guest wrote {got.get(f's{c}')}")
    counters = v.queue_counters()
    print(f"per-queue counters: {counters}")
    for q in (0, 1):
        c = counters.get(q, {})
        check(c.get("writes", 0) + c.get("reads", 0) > 0, f"queue {q} saw no requests: {counters}")
        # Reads, writes and flushes of a raw image all go through io_uring.
        check(c.get("async", 0) == c.get("reads", 0) + c.get("writes", 0) + c.get("flushes", 0),
              f"queue {q}: not every request went through io_uring: {counters}")


def blk_direct_on_two_queues(vhost_bin, workdir):
    """The multi-queue case with direct=on: the image is opened O_DIRECT
    (bypassing the host page cache) and the guest's data still round-trips."""
    probe = os.path.join(workdir, "probe.img")
    make_disk(probe, 4096)
    try:
        os.close(os.open(probe, os.O_RDWR | os.O_DIRECT))
    except OSError as e:
        raise Skipped(f"{workdir} does not support O_DIRECT: {e}")
    blk_multiqueue_from_two_vcpus(vhost_bin, workdir, ",direct=on")


def blk_readonly_disk(vhost_bin, workdir):
    """readonly=on: the guest's disk is read-only (/sys/block/vda/ro = 1),
    a write fails, and the image is unchanged."""
    disk = os.path.join(workdir, "disk.img")
    make_disk(disk)
    data = secrets.token_bytes(MIB)
    write_at(disk, 0, data)
    v = Vhost(vhost_bin, workdir, ["blk", "--disk", f"path={disk},readonly=on"])
    try:
        script = write_script(workdir, GUEST_LIB + r"""
ro=$(cat /sys/block/vda/ro)
if dd if=/dev/zero of=/dev/vda bs=4k count=16 oflag=direct conv=fsync 2>/dev/null; then w=ok; else w=refused; fi
sum=$(dd if=/dev/vda bs=1M count=1 2>/dev/null | sha256sum | cut -d' ' -f1)
echo "SKIFF-TEST-RESULT: pass ro=$ro write=$w sum=$sum"
""")
        got = boot(workdir, script, [*v.chardev(), "-device", "vhost-user-blk-pci,chardev=c0"])
        check(v.alive(), "skiff-vhost died")
    finally:
        v.stop()
    check(got.get("ro") == "1", f"/sys/block/vda/ro is {got.get('ro')}, want 1")
    check(got.get("write") == "refused", "a write to the read-only disk succeeded")
    check(got.get("sum") == sha256(data), "the guest read wrong data from the read-only disk")
    check(read_at(disk, 0, MIB) == data, "the read-only image changed")


def rng_hwrng_bytes_come_from_source(vhost_bin, workdir):
    """skiff-vhost rng behind vhost-user-rng-pci: /dev/hwrng is virtio_rng
    and its bytes are the source's (a file of one repeated random byte, so
    the guest can tell skiff-vhost's bytes from any other source)."""
    marker = secrets.randbelow(254) + 1
    src = os.path.join(workdir, "entropy.bin")
    with open(src, "wb") as f:
        f.write(bytes([marker]) * (16 * MIB))
    v = Vhost(vhost_bin, workdir, ["rng", "--src", src])
    try:
        script = write_script(workdir, r"""
fail() { echo "SKIFF-TEST-RESULT: fail $*"; exit 1; }
cur=$(cat /sys/class/misc/hw_random/rng_current 2>/dev/null)
[ -c /dev/hwrng ] || fail "no /dev/hwrng (rng_current=$cur)"
n=$(dd if=/dev/hwrng bs=256 count=4 2>/dev/null | wc -c)
bytes=$(dd if=/dev/hwrng bs=256 count=1 2>/dev/null | od -An -tu1 -v | tr -s ' ' '\n' | grep -v '^$' | sort -u | tr '\n' ,)
echo "SKIFF-TEST-RESULT: pass cur=$cur n=$n bytes=$bytes"
""")
        got = boot(workdir, script, [*v.chardev(), "-device", "vhost-user-rng-pci,chardev=c0"])
        check(v.alive(), "skiff-vhost died")
    finally:
        v.stop()
    check(got.get("cur", "").startswith("virtio_rng"), f"rng_current is {got.get('cur')}, want virtio_rng.*")
    check(got.get("n") == "1024", f"read {got.get('n')} bytes from /dev/hwrng, want 1024")
    check(got.get("bytes") == f"{marker},", f"hwrng bytes {got.get('bytes')}, source has only {marker}")


def boot_until(workdir, script, qemu_args, marker_re):
    """Boots the guest and returns (QEMU process, first match of marker_re)
    as soon as the serial console shows it, with QEMU still running; the
    caller kills it. Raises Failed if the guest reports failure or the
    marker does not appear within TIMEOUT."""
    initrd = harness.make_initrd(os.path.join(harness.GUEST_DIR, "initramfs.cpio.gz"), workdir, script)
    cmd = [harness.QEMU, "-accel", "tcg", "-m", "512M", "-smp", "1", "-nographic", "-monitor", "none",
           "-serial", "stdio", "-no-reboot", "-kernel", os.path.join(harness.GUEST_DIR, "vmlinuz"),
           "-initrd", initrd, "-append", "console=ttyS0 panic=-1 skiff.run=/tests/run.sh",
           *SHARED_RAM, *qemu_args]
    log_path = os.path.join(workdir, "serial.log")
    qemu = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    sel = selectors.DefaultSelector()
    sel.register(qemu.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + TIMEOUT
    buf = b""
    try:
        with open(log_path, "wb") as log:
            while time.monotonic() < deadline:
                if not sel.select(1.0):
                    continue
                chunk = os.read(qemu.stdout.fileno(), 65536)
                if not chunk:
                    break
                log.write(chunk)
                log.flush()
                buf += chunk
                m = re.search(marker_re, buf)
                if m:
                    return qemu, m
                m = re.search(rb"SKIFF-TEST-RESULT: fail (.*)", buf)
                if m:
                    raise Failed(f"guest: {m.group(1).decode(errors='replace')} (log {log_path})")
        raise Failed(f"the guest never printed {marker_re!r} (log {log_path})")
    except BaseException:
        kill_group(qemu)
        raise
    finally:
        sel.close()


def kill_group(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def blk_crash_durability(vhost_bin, workdir):
    """The guest writes and syncs data, says so; the host kill -9s
    skiff-vhost and QEMU at that moment; the data is in the image."""
    disk = os.path.join(workdir, "disk.img")
    make_disk(disk)
    v = Vhost(vhost_bin, workdir, ["blk", "--disk", f"path={disk}"])
    script = write_script(workdir, GUEST_LIB + r"""
dd if=/dev/urandom of=/tmp/data bs=64k count=16 2>/dev/null
sum=$(sha256sum /tmp/data | cut -d' ' -f1)
dd if=/tmp/data of=/dev/vda bs=64k seek=7 oflag=direct conv=fsync 2>/dev/null || fail "write failed"
dd if=/tmp/data of=/dev/vda bs=64k seek=300 2>/dev/null || fail "buffered write failed"
sync
echo "SYNCED sum=$sum"
sleep 600
""")
    qemu = None
    try:
        qemu, m = boot_until(workdir, script, [*v.chardev(), "-device", "vhost-user-blk-pci,chardev=c0"],
                             rb"SYNCED sum=([0-9a-f]{64})")
        want = m.group(1).decode()
    finally:
        # The crash: both processes die without any chance to flush.
        v.kill9()
        if qemu is not None:
            kill_group(qemu)
    direct = sha256(read_at(disk, 7 * 65536, 16 * 65536))
    buffered = sha256(read_at(disk, 300 * 65536, 16 * 65536))
    check(direct == want, f"O_DIRECT+fsync data: image holds {direct}, guest wrote {want}")
    check(buffered == want, f"buffered+sync data: image holds {buffered}, guest wrote {want}")


def blk_front_end_killed_mid_io_then_next_vm_served(vhost_bin, workdir):
    """QEMU is kill -9ed while the guest writes continuously (rings running,
    requests in flight); skiff-vhost resets and serves the next VM, whose
    write and read-back checksums agree with the image."""
    disk = os.path.join(workdir, "disk.img")
    make_disk(disk)
    v = Vhost(vhost_bin, workdir, ["blk", "--disk", f"path={disk},num_queues=2"])
    try:
        busy = write_script(workdir, GUEST_LIB + r"""
echo WRITING
while true; do dd if=/dev/urandom of=/dev/vda bs=64k count=64 oflag=direct 2>/dev/null; done
""")
        first = os.path.join(workdir, "killed")
        os.makedirs(first, exist_ok=True)
        qemu, _ = boot_until(first, busy, [*v.chardev(), "-device", "vhost-user-blk-pci,chardev=c0"],
                             rb"WRITING")
        time.sleep(2)  # let requests flow
        kill_group(qemu)
        time.sleep(0.5)
        check(v.alive(), "skiff-vhost died with its front end")
        w = write_script(workdir, GUEST_LIB + r"""
dd if=/dev/urandom of=/tmp/data bs=64k count=8 2>/dev/null
sum=$(sha256sum /tmp/data | cut -d' ' -f1)
dd if=/tmp/data of=/dev/vda bs=64k seek=500 oflag=direct conv=fsync 2>/dev/null || fail "write failed"
back=$(dd if=/dev/vda bs=64k skip=500 count=8 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
echo "SKIFF-TEST-RESULT: pass sum=$sum back=$back"
""")
        got = boot(os.path.join(workdir, "next"), w,
                   [*v.chardev(), "-device", "vhost-user-blk-pci,chardev=c0,num-queues=2"], smp=2)
        check(v.alive(), "skiff-vhost died after the second VM")
    finally:
        v.stop()
    host = sha256(read_at(disk, 500 * 65536, 8 * 65536))
    check(got.get("sum") == host, f"image holds {host}, the second VM wrote {got.get('sum')}")
    check(got.get("back") == host, f"second VM read back {got.get('back')}, image holds {host}")
    counters = v.queue_counters()
    check(sum(c.get("writes", 0) for c in counters.values()) > 0, f"no writes counted: {counters}")


CASES = {f.__name__: f for f in (
    blk_size_serial_and_host_data,
    blk_guest_writes_reach_image_across_reconnect,
    blk_multiqueue_from_two_vcpus,
    blk_direct_on_two_queues,
    blk_readonly_disk,
    rng_hwrng_bytes_come_from_source,
    blk_crash_durability,
    blk_front_end_killed_mid_io_then_next_vm_served,
)}


def verdict(case):
    """Runs one case after the guest check; prints the outcome and returns
    the exit status (0 pass, 1 fail, 77 skipped)."""
    try:
        skip_if_unavailable()
        case()
    except Skipped as e:
        print(f"skipped: {e}")
        return harness.EXIT_SKIP
    except Failed as e:
        print(f"FAIL: {e}")
        return 1
    print("pass")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("case", choices=sorted(CASES))
    p.add_argument("--vhost", required=True, help="the skiff-vhost binary")
    p.add_argument("--workdir", required=True)
    a = p.parse_args()
    workdir = os.path.join(a.workdir, a.case)
    os.makedirs(workdir, exist_ok=True)
    return verdict(lambda: CASES[a.case](a.vhost, workdir))


if __name__ == "__main__":
    sys.exit(main())
