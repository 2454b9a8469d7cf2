#!/usr/bin/env python3
"""Runs the virtio_balloon test guest (a polling virtio 1.x balloon driver),
drives its target from outside and checks, from outside, that the VMM
process's RSS (VmRSS in /proc/PID/status) drops by about the ballooned
amount on inflation and comes back after deflation.

  virtio_balloon_test.py --vmm qemu --elf virtio_balloon.pvh.elf
  virtio_balloon_test.py --vmm skiff --skiff SKIFF --elf virtio_balloon.pvh.elf

QEMU (-device virtio-balloon-pci, target through QMP `balloon`, statistics
through qom-get guest-stats) is the reference that proves the guest and
this harness right; it uses KVM when /dev/kvm is there and otherwise
-accel tcg -cpu max (said in the output). skiff (--balloon, target through
the API's vm.resize desired_balloon, statistics in vm.counters) needs KVM:
no /dev/kvm is a skip.
Exit 0 pass, 1 fail, 77 skipped.
"""
import argparse
import json
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time

from guest_harness import have_kvm, qemu_command, skip

OK_EXIT = (0x10 << 1) | 1
# What the guest touches and the harness balloons (--mib), and guest RAM
# (that plus 192 MiB); set in main().
MIB = 64
PAGES = MIB * 256
RAM = 256 << 20


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) << 10 for l in f if l.startswith("VmRSS:"))


class Lines:
    """The guest's serial output, line by line, from a reader thread."""

    def __init__(self, stream):
        self.q = queue.Queue()
        self.all = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream):
        for line in stream:
            self.q.put(line.rstrip("\r\n"))
        self.q.put(None)

    def wait(self, key, timeout=120):
        """The value of the next KEY=VALUE line."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {key}=")
            try:
                line = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"the guest output ended before {key}=")
            self.all.append(line)
            print(f"  guest: {line}", flush=True)
            if line.startswith("ERROR="):
                raise AssertionError(f"guest failed: {line}")
            if line.startswith(key + "="):
                return line[len(key) + 1:]

    def drain(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.q.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                return
            self.all.append(line)
            print(f"  guest: {line}", flush=True)


class Qmp:
    def __init__(self, path):
        deadline = time.monotonic() + 30
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX)
                self.s.connect(path)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.f = self.s.makefile("rw")
        json.loads(self.f.readline())  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.f.flush()
        while True:
            r = json.loads(self.f.readline())
            if "event" in r:
                continue
            if "error" in r:
                raise AssertionError(f"QMP {name}: {r['error']}")
            return r["return"]


class QemuVmm:
    def __init__(self, a, tmp):
        sock = os.path.join(tmp, "qmp.sock")
        cmd = qemu_command(a.elf, f"mib={MIB}", "-qmp", f"unix:{sock},server=on,wait=off",
               "-device", "virtio-balloon-pci,id=balloon0,disable-legacy=on",
               mem=f"{RAM >> 20}M")
        self.p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        self.qmp = Qmp(sock)
        self.qmp.cmd("qom-set", path="/machine/peripheral/balloon0",
                     property="guest-stats-polling-interval", value=1)

    def set_balloon(self, nbytes):
        # QMP's value is the memory the guest should keep (num_pages =
        # (RAM - value) / 4 KiB).
        self.qmp.cmd("balloon", value=RAM - nbytes)

    def memory_actual(self):
        return self.qmp.cmd("query-balloon")["actual"]

    def stats(self):
        s = self.qmp.cmd("qom-get", path="/machine/peripheral/balloon0", property="guest-stats")
        return {"total": s["stats"].get("stat-total-memory"),
                "free": s["stats"].get("stat-free-memory"),
                "refreshes": s["stats"].get("stat-available-memory")}

    def finish(self):
        try:
            self.p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        return self.p.returncode


class SkiffVmm:
    def __init__(self, a, tmp):
        self.sock = os.path.join(tmp, "api.sock")
        self.events = os.path.join(tmp, "events.json")
        cmd = [a.skiff, "--kernel", a.elf, "--cmdline", f"mib={MIB}", "--memory", f"size={RAM >> 20}M",
               "--serial", "tty", "--balloon", "size=0,statistics_polling_interval=1",
               "--api-socket", f"path={self.sock}", "--event-monitor", f"path={self.events}"]
        self.log = open(os.path.join(tmp, "skiff.log"), "w+")
        self.p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=self.log, text=True)

    def api(self, method, ep, body=None):
        cmd = ["curl", "-s", "-w", "\n%{http_code}", "--unix-socket", self.sock, "-X", method,
               f"http://localhost/api/v1/{ep}"]
        if body is not None:
            cmd += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
        text, _, code = out.rpartition("\n")
        if not code.startswith("2"):
            raise AssertionError(f"{method} {ep}: HTTP {code} {text}")
        return json.loads(text) if text.strip() else None

    def set_balloon(self, nbytes):
        self.api("PUT", "vm.resize", {"desired_balloon": nbytes})

    def memory_actual(self):
        return self.api("GET", "vm.info")["memory_actual_size"]

    def stats(self):
        b = self.api("GET", "vm.counters").get("balloon0", {})
        return {"total": b.get("total_memory"), "free": b.get("free_memory"),
                "refreshes": b.get("available_memory")}

    def finish(self):
        deadline = time.time() + 60
        while time.time() < deadline:
            if os.path.exists(self.events) and '"event":"shutdown"' in open(self.events).read():
                break
            time.sleep(0.1)
        subprocess.run(["curl", "-s", "--unix-socket", self.sock, "-X", "PUT",
                        "http://localhost/api/v1/vmm.shutdown"], capture_output=True, timeout=10)
        try:
            self.p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        status = None
        if os.path.exists(self.events):
            for line in open(self.events):
                e = json.loads(line)
                if e["source"] == "vm" and e["event"] == "shutdown" and e.get("properties"):
                    # skiff's shutdown event carries the exit status itself ((v << 1) | 1,
                    # Outcome::debug_status), not the byte v the guest wrote.
                    status = int(e["properties"].get("status", "-1"))
        self.log.seek(0)
        print("--- skiff log ---\n" + self.log.read())
        return status


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vmm", choices=["qemu", "skiff"], required=True)
    ap.add_argument("--elf", required=True)
    ap.add_argument("--skiff")
    ap.add_argument("--mib", type=int, default=64, help="MiB to balloon (bench: more)")
    a = ap.parse_args()
    global MIB, PAGES, RAM
    MIB, PAGES, RAM = a.mib, a.mib * 256, (a.mib + 192) << 20
    if a.vmm == "skiff" and not have_kvm():
        skip("/dev/kvm is not available")

    failures = []

    def expect(cond, what):
        if not cond:
            failures.append(what)
            print(f"FAIL: {what}", flush=True)

    mib = lambda b: b / (1 << 20)
    with tempfile.TemporaryDirectory(prefix="skballoon") as tmp:
        vmm = QemuVmm(a, tmp) if a.vmm == "qemu" else SkiffVmm(a, tmp)
        out = Lines(vmm.p.stdout)
        try:
            expect(int(out.wait("TOUCHED")) == PAGES, "guest touched the wrong number of pages")
            time.sleep(0.3)
            rss_touched = rss(vmm.p.pid)
            t0 = time.monotonic()
            vmm.set_balloon(MIB << 20)
            expect(int(out.wait("TARGET")) == PAGES, "guest saw the wrong target")
            out.wait("INFLATED")
            seconds = time.monotonic() - t0
            rss_at_inflated = rss(vmm.p.pid)
            time.sleep(0.3)
            rss_inflated = rss(vmm.p.pid)
            drop = rss_touched - rss_inflated
            # From the target change to the guest's "done", RSS as it was then
            # (bench/balloon/run.sh reads this line).
            print(f"RECLAIM_MIB_PER_S={mib(rss_touched - rss_at_inflated) / seconds:.0f} "
                  f"({mib(rss_touched - rss_at_inflated):.0f} MiB in {seconds * 1000:.0f} ms)",
                  flush=True)
            print(f"RSS touched {mib(rss_touched):.1f} MiB -> inflated {mib(rss_inflated):.1f} MiB: "
                  f"dropped {mib(drop):.1f} MiB of {MIB} MiB ballooned", flush=True)
            expect(drop >= (MIB << 20) * 8 // 10, f"RSS dropped by {mib(drop):.1f} MiB, want about {MIB}")
            actual = vmm.memory_actual()
            expect(actual == RAM - (MIB << 20), f"memory actual {actual}, want {RAM - (MIB << 20)}")
            # Statistics: the polling interval is 1 s; wait for a refresh.
            deadline = time.monotonic() + 10
            st = vmm.stats()
            while time.monotonic() < deadline and not (st["refreshes"] or 0) > 0:
                time.sleep(0.2)
                st = vmm.stats()
            print(f"guest statistics: {st}", flush=True)
            expect(st["total"] and st["total"] > 0, "no total-memory statistic")
            expect(st["free"] is not None and st["total"] and
                   st["total"] - st["free"] == MIB << 20, "free-memory statistic wrong")
            expect((st["refreshes"] or 0) > 0, "the device never asked for fresh statistics")

            vmm.set_balloon(0)
            expect(int(out.wait("ZEROED")) == PAGES, "ballooned pages did not read zero after deflate")
            out.wait("RETOUCHED")
            time.sleep(0.3)
            rss_back = rss(vmm.p.pid)
            print(f"RSS after deflate and touching again: {mib(rss_back):.1f} MiB "
                  f"(+{mib(rss_back - rss_inflated):.1f} MiB)", flush=True)
            expect(rss_back - rss_inflated >= (MIB << 20) * 8 // 10, "deflated pages did not come back")
            expect(vmm.memory_actual() == RAM, "memory actual did not return to RAM size")
            vmm.set_balloon(4096)  # "done"
            out.wait("STATS_REFRESHES")
            out.drain()
        except AssertionError as e:
            failures.append(str(e))
            print(f"FAIL: {e}", flush=True)
            vmm.p.kill()
        status = vmm.finish()
    expect(status == OK_EXIT, f"guest exit status {status}, want {OK_EXIT}")
    if failures:
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
