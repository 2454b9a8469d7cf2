#!/usr/bin/env python3
"""API latency and create+boot-to-first-instruction benchmark for skiff.

    bench/api/api_bench.py [N]        (default N=2000 requests per endpoint)

Starts `skiff --api-socket` (SKIFF_BUILD_DIR, default build/main), keeps one
HTTP/1.1 connection over the Unix socket (as ch-remote and libvirt do), and
reports median and p99 round-trip latency of GET vmm.ping and GET
vm.counters (with a running ring3_loop guest, one vCPU), then the time from
sending vm.create to the guest's first instruction: the test guests' first
instruction writes BOOT_MARKER_ENTRY to port 0x80, which vm.counters shows as
boot_markers.writes >= 1. That is polled over the same connection, so the
figure includes up to one counters round trip of resolution; it is repeated
B times (SKIFF_BENCH_BOOTS, default 20) with vm.delete in between. Prints
`skipped: <reason>` and exits 77 without /dev/kvm.
"""
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BUILD = os.environ.get("SKIFF_BUILD_DIR", "build/main")
SKIFF = os.path.join(BUILD, "src/cli/skiff")
GUEST = os.path.join(BUILD, "tests/guests/ring3_loop.pvh.elf")


class Conn(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=60)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.unix_path)

    def call(self, method, ep, body=None):
        self.request(method, f"/api/v1/{ep}", body=body,
                     headers={"Content-Type": "application/json"} if body else {})
        r = self.getresponse()
        data = r.read()
        if r.status >= 300:
            raise RuntimeError(f"{ep}: {r.status} {data!r}")
        return json.loads(data) if data else None


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def latency(conn, method, ep, n):
    for _ in range(50):
        conn.call(method, ep)  # warm-up
    out = []
    for _ in range(n):
        t = time.perf_counter_ns()
        conn.call(method, ep)
        out.append((time.perf_counter_ns() - t) / 1000)
    return out


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    boots = int(os.environ.get("SKIFF_BENCH_BOOTS", "20"))
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        print("skipped: /dev/kvm is not available")
        return 77
    for f in (SKIFF, GUEST):
        if not os.path.exists(f):
            print(f"skipped: {f} not built")
            return 77
    d = tempfile.TemporaryDirectory()
    sock = os.path.join(d.name, "api.sock")
    proc = subprocess.Popen([SKIFF, "--api-socket", f"path={sock}"], stderr=subprocess.DEVNULL)
    try:
        while not os.path.exists(sock):
            time.sleep(0.005)
        conn = Conn(sock)
        cfg = json.dumps({"payload": {"kernel": GUEST, "cmdline": "iters=1000000000000"},
                          "memory": {"size": 128 << 20}, "serial": {"mode": "Null"}})
        boot_ms = []
        for _ in range(boots):
            t = time.perf_counter_ns()
            conn.call("PUT", "vm.create", cfg)
            conn.call("PUT", "vm.boot")
            while conn.call("GET", "vm.counters")["boot_markers"]["writes"] < 1:
                pass
            boot_ms.append((time.perf_counter_ns() - t) / 1e6)
            conn.call("PUT", "vm.delete")
        conn.call("PUT", "vm.create", cfg)
        conn.call("PUT", "vm.boot")
        ping = latency(conn, "GET", "vmm.ping", n)
        counters = latency(conn, "GET", "vm.counters", n)
        print(f"requests per endpoint: {n}; boots: {boots}")
        for name, xs in (("vmm.ping", ping), ("vm.counters", counters)):
            print(f"{name:<12} median {statistics.median(xs):8.1f} us   p99 {pct(xs, 99):8.1f} us")
        print(f"vm.create+vm.boot -> first guest instruction (port 0x80): "
              f"median {statistics.median(boot_ms):.2f} ms   p99 {pct(boot_ms, 99):.2f} ms   "
              f"min {min(boot_ms):.2f} ms")
        conn.call("PUT", "vmm.shutdown")
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
