#!/usr/bin/env python3
"""Runs one test guest under QEMU+KVM (run-under-qemu.sh) and checks its
serial output and exit status against what this test configured.

  qemu_ref_test.py --runner run-under-qemu.sh --elf hello.pvh.elf --guest hello [--machine q35]

Exit 0 = pass, 1 = fail, 77 = skipped (printed as "skipped: <reason>";
CTest maps it through SKIP_RETURN_CODE). Expected values come from the test's
own inputs (random command-line token, random module bytes, the host clock,
the -smp it asked for) or from QEMU's machine model (its ACPI tables), never
from an earlier guest run.
"""
import argparse
import datetime
import os
import random
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time

SKIP = 77


def status_of(v):
    """QEMU isa-debug-exit: the process exits with (v << 1) | 1."""
    return (v << 1) | 1


class Failure(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise Failure(what)


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


class Run:
    def __init__(self, out, status):
        self.out = out
        self.status = status
        self.lines = [l.rstrip("\r") for l in out.split("\n") if l.strip()]

    def values(self, key):
        """All values of KEY=VALUE lines, in order."""
        return [l[len(key) + 1:] for l in self.lines if l.startswith(key + "=")]

    def one(self, key):
        v = self.values(key)
        expect(len(v) == 1, f"want exactly one {key}= line, got {len(v)}")
        return v[0]


class Guest:
    def __init__(self, args):
        self.args = args
        self.fmt = "mb" if args.elf.endswith(".mb.elf") else "bz" if args.elf.endswith(".bzImage") else "pvh"
        self.env = dict(os.environ, QEMU_MACHINE=args.machine)
        self.extra = []

    def run(self, stdin_script=None, timeout=90):
        # QEMU gets the same budget; this loop allows a little more so the
        # runner's own timeout (status 124) is what normally fires.
        self.env.setdefault("QEMU_TIMEOUT", str(timeout))
        timeout += 15
        p = subprocess.Popen([self.args.runner, self.args.elf] + self.extra, env=self.env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out = b""
        deadline = time.monotonic() + timeout
        fed = stdin_script is None
        if fed:
            p.stdin.close()
        while True:
            r, _, _ = select.select([p.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                p.kill()
                raise Failure(f"no exit within {timeout} s; output so far:\n{out.decode(errors='replace')}")
            chunk = os.read(p.stdout.fileno(), 4096)
            if not chunk:
                break
            out += chunk
            if not fed and stdin_script[0].encode() in out:
                p.stdin.write(stdin_script[1].encode())
                p.stdin.close()
                fed = True
        p.wait()
        err = p.stderr.read().decode(errors="replace")
        run = Run(out.decode(errors="replace"), p.returncode)
        self.last = run
        self.stderr = err
        return run

    def started(self, r, name, count=1):
        starts = [l for l in r.lines if l == f"GUEST {name} START"]
        expect(len(starts) == count, f"want {count} 'GUEST {name} START' line(s), got {len(starts)}")
        expect(r.lines[0] == f"GUEST {name} START", f"first line is {r.lines[0]!r}")
        expect(not any(l.startswith(("ERROR=", "EXCEPTION", "ACPI_ERROR=")) for l in r.lines),
               "guest reported an error")

    def status(self, r, want):
        expect(r.status == want, f"exit status {r.status}, want {want}")


def check_exit_now(g):
    r = g.run()
    g.status(r, status_of(0))
    expect(r.out == "", f"exit_now printed {r.out!r}")


def check_hello(g):
    r = g.run()
    g.started(r, "hello")
    expect("hello from guest" in r.lines, "no 'hello from guest' line")
    g.status(r, status_of(0x10))


def check_bootinfo(g):
    tmp = tempfile.mkdtemp(prefix="skiff-bootinfo-")
    try:
        rng = random.Random()
        data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(100000, 300000)))
        module = os.path.join(tmp, "module.bin")
        with open(module, "wb") as f:
            f.write(data)
        cmdline = f"skiff_test=1 token={rng.getrandbits(64):x} quiet"
        g.env.update(GUEST_CMDLINE=cmdline, GUEST_INITRD=module)
        r = g.run()
    finally:
        shutil.rmtree(tmp)
    g.started(r, "bootinfo")
    want_proto = {"mb": "multiboot", "bz": "bzimage", "pvh": "pvh"}[g.fmt]
    expect(r.one("BOOTPROTO") == want_proto, f"BOOTPROTO={r.one('BOOTPROTO')}, want {want_proto}")
    got_cmdline = r.one("CMDLINE")
    if g.fmt == "mb":  # QEMU's Multiboot loader prefixes the kernel path
        expect(got_cmdline.endswith(" " + cmdline), f"CMDLINE={got_cmdline!r}, want ...{cmdline!r}")
    else:
        expect(got_cmdline == cmdline, f"CMDLINE={got_cmdline!r}, want {cmdline!r}")
    mods = r.values("MODULE")
    expect(len(mods) == 1, f"want 1 MODULE line, got {len(mods)}")
    addr, size, digest = mods[0].split()
    expect(int(size) == len(data), f"module size {size}, want {len(data)}")
    expect(int(digest, 16) == fnv1a64(data), f"module hash {digest}, want {fnv1a64(data):016x}")
    expect(int(addr, 16) >= 0x100000, f"module at {addr}, below 1 MiB")
    ram = 0
    covers_1m = False
    for m in r.values("MEM"):
        start, length, typ = m.split()
        start, length, typ = int(start, 16), int(length, 16), int(typ)
        if typ == 1:
            ram += length
            covers_1m |= start <= 0x100000 < start + length
    expect(covers_1m, "no RAM entry covers 1 MiB")
    expect(200 << 20 <= ram <= 256 << 20, f"RAM in the map is {ram:#x} bytes for -m 256M")
    g.status(r, status_of(0x10))


def write_modules(tmp, count, rng):
    files = []
    for i in range(count):
        data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 20000)))
        path = os.path.join(tmp, f"mod{i}.bin")
        with open(path, "wb") as f:
            f.write(data)
        files.append((path, data))
    return files


def check_bootinfo_modules(g):
    """Multiboot with three modules: each reported, in order, hashed right."""
    expect(g.fmt == "mb", "QEMU passes several modules only to Multiboot kernels")
    tmp = tempfile.mkdtemp(prefix="skiff-bootinfo-")
    try:
        files = write_modules(tmp, 3, random.Random())
        g.env.update(GUEST_INITRD=",".join(f"{p} arg{i}" for i, (p, _) in enumerate(files)))
        r = g.run()
    finally:
        shutil.rmtree(tmp)
    g.started(r, "bootinfo")
    mods = [m.split() for m in r.values("MODULE")]
    expect(len(mods) == 3, f"want 3 MODULE lines, got {len(mods)}")
    for (addr, size, digest), (_, data) in zip(mods, files):
        expect(int(size) == len(data) and int(digest, 16) == fnv1a64(data),
               f"module {addr}: {size} bytes hash {digest}, want {len(data)} bytes {fnv1a64(data):016x}")
    g.status(r, status_of(0x10))


def check_bootinfo_too_many_modules(g):
    """Nine modules, one more than the guest takes: a clear ERROR= line and
    exit 0x7e, not a crash and not a silent truncation."""
    expect(g.fmt == "mb", "QEMU passes several modules only to Multiboot kernels")
    tmp = tempfile.mkdtemp(prefix="skiff-bootinfo-")
    try:
        files = write_modules(tmp, 9, random.Random())
        g.env.update(GUEST_INITRD=",".join(p for p, _ in files))
        r = g.run()
    finally:
        shutil.rmtree(tmp)
    expect(r.lines[:1] == ["GUEST bootinfo START"], "no START line")
    errors = r.values("ERROR")
    expect(errors == ["multiboot mods_count 9 > 8"], f"ERROR lines {errors}")
    expect(not r.values("MODULE"), "modules printed despite the error")
    g.status(r, status_of(0x7E))


def check_smp(g):
    cpus = 2
    g.env.update(QEMU_SMP=str(cpus))
    r = g.run()
    g.started(r, "smp")
    line = [l for l in r.lines if l.startswith("CPUS=")]
    expect(len(line) == 1, "no CPUS= line")
    m = re.fullmatch(r"CPUS=(\d+) STARTED=(\d+) APICIDS=([\d,]+)", line[0])
    expect(m, f"malformed {line[0]!r}")
    expect(int(m.group(1)) == cpus, f"CPUS={m.group(1)}, want {cpus}")
    expect(int(m.group(2)) == cpus, f"STARTED={m.group(2)}, want {cpus}")
    ids = [int(x) for x in m.group(3).split(",")]
    expect(sorted(ids) == list(range(cpus)), f"APICIDS={ids}")
    g.status(r, status_of(0x10))


def check_serial_echo(g):
    text = "Hello, skiff 42!"
    r = g.run(stdin_script=("READY", text + "q"))
    g.started(r, "serial_echo")
    expect(text.upper() in r.lines, f"no echoed line {text.upper()!r}")
    expect(r.lines[-1] == "DONE", f"last line {r.lines[-1]!r}, want DONE")
    g.status(r, status_of(0x10))


def check_rtc(g):
    r = g.run()
    now = time.time()
    g.started(r, "rtc")
    epoch = int(r.one("EPOCH"))
    expect(abs(epoch - now) < 300, f"EPOCH={epoch} is {epoch - now:+.0f} s from the host clock")
    want = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    expect(r.one("RTC") == want, f"RTC={r.one('RTC')} does not match EPOCH ({want})")
    g.status(r, status_of(0x10))


# QEMU's ACPI: q35 has a PM1a control block and \_S5_ = 0; microvm is
# HW-reduced with the GED sleep register and \_S5_ = 5.
POWEROFF_EXPECT = {"q35": "POWEROFF via=pm1a slp_typ=0", "pc": "POWEROFF via=pm1a slp_typ=0",
                   "microvm": "POWEROFF via=sleep_control slp_typ=5"}


def check_poweroff(g):
    r = g.run()
    g.started(r, "poweroff")
    want = POWEROFF_EXPECT[g.args.machine.split(",")[0]]
    expect(want in r.lines, f"no {want!r} line")
    expect("STILL RUNNING" not in r.lines, "the VM did not power off")
    g.status(r, 0)


def check_reboot(g):
    # 0x5f is QEMU's CPU-count byte for SeaBIOS (see reboot.c); 0x5e is free.
    g.env.update(GUEST_CMDLINE="cmos_index=0x5e", QEMU_REBOOT="1")
    r = g.run(timeout=200)  # three SeaBIOS boots; slow on a loaded host
    g.started(r, "reboot", count=3)
    seq = [l for l in r.lines if l.startswith(("BOOT=", "REBOOT"))]
    want = ["BOOT=1", "REBOOT via=i8042", "BOOT=2", "REBOOT via=acpi", "BOOT=3"]
    expect(seq == want, f"sequence {seq}, want {want}")
    g.status(r, status_of(0x13))


def check_triple_fault(g):
    r = g.run()
    g.started(r, "triple_fault")
    expect(r.lines[-1] == "ABOUT TO FAULT", f"output went on after the fault: {r.lines[-1]!r}")
    # -no-reboot turns the triple-fault reset into a clean QEMU exit (0);
    # any port-0xf4 exit would be odd.
    g.status(r, 0)


def check_ring3_loop(g):
    iters = 123456789  # odd: exercises the other branch of n(n-1)/2
    g.env.update(GUEST_CMDLINE=f"iters={iters}")
    r = g.run()
    g.started(r, "ring3_loop")
    expect(r.one("CPL") == "3", f"CPL={r.one('CPL')}")
    want = f"LOOP iters={iters} ok=1"
    expect(want in r.lines, f"no {want!r} line")
    g.status(r, status_of(0x10))


def check_cpuid(g):
    g.extra = ["-smp", "2,sockets=1,cores=2,threads=1"]
    r = g.run()
    g.started(r, "cpuid")
    hv = r.one("HV").split()
    expect(hv[0] == "KVMKVMKVM", f"HV={hv[0]}, want KVMKVMKVM")
    leaf1 = r.values("LEAF1_EBX")
    expect(len(leaf1) == 1, "no LEAF1_EBX line")
    expect(" APICID=0 " in leaf1[0] + " ", f"BSP APIC ID not 0: {leaf1[0]}")
    expect(leaf1[0].endswith(" LOGICAL=2"), f"want LOGICAL=2 for 2 cores: {leaf1[0]}")
    levels = [l for l in r.lines if l.startswith("LEAF0B.")]
    expect(any("type=2" in l and "count=2" in l for l in levels), f"no core level with 2 CPUs: {levels}")
    g.status(r, status_of(0x10))


def topology_apic_id(index, threads, cores, dies):
    """The x86 APIC ID of CPU `index`: thread, core, die, package fields each
    just wide enough for its count (SDM Vol. 3A "Hierarchical Mapping of
    Shared Resources"; QEMU's and skiff's scheme)."""
    width = lambda n: (n - 1).bit_length()
    t, c, d = width(threads), width(cores), width(dies)
    return (index % threads) | ((index // threads) % cores) << t \
        | ((index // (threads * cores)) % dies) << (t + c) \
        | (index // (threads * cores * dies)) << (t + c + d)


def check_topology(g):
    # 2 packages x 3 cores: the core field is 2 bits wide, so the APIC IDs
    # are 0,1,2 and 4,5,6, not 0..5. Two NUMA nodes, one per package.
    sockets, cores, dist = 2, 3, 21
    n = sockets * cores
    g.extra = ["-smp", f"{n},sockets={sockets},cores={cores},threads=1",
               "-object", "memory-backend-ram,id=m0,size=128M",
               "-object", "memory-backend-ram,id=m1,size=128M",
               "-numa", f"node,nodeid=0,cpus=0-{cores - 1},memdev=m0",
               "-numa", f"node,nodeid=1,cpus={cores}-{n - 1},memdev=m1",
               "-numa", f"dist,src=0,dst=1,val={dist}"]
    r = g.run(timeout=120)
    g.started(r, "topology")
    ids = [topology_apic_id(i, 1, cores, 1) for i in range(n)]
    expect(ids == [0, 1, 2, 4, 5, 6], f"APIC ID scheme: {ids}")
    madt = [dict(kv.split("=") for kv in v.split()) for v in r.values("MADT_CPU")]
    expect(sorted(int(m["apic"]) for m in madt if int(m["flags"]) & 1) == ids,
           f"MADT enabled APIC IDs {madt}, want {ids}")
    # Leaf 0xB on the BSP: SMT level (1 thread, shift 0), core level
    # spanning the package (3 CPUs, shift 2).
    levels = r.values("LEAF0B.0") + r.values("LEAF0B.1")
    expect(levels == ["type=1 shift=0 count=1 x2apic=0", f"type=2 shift=2 count={cores} x2apic=0"],
           f"leaf 0xB levels {levels}")
    srat = sorted((int(d["apic"]), int(d["node"])) for d in
                  (dict(kv.split("=") for kv in v.split()) for v in r.values("SRAT_CPU")))
    expect(srat == [(a, 0 if i < cores else 1) for i, a in enumerate(ids)], f"SRAT CPUs {srat}")
    mems = [dict(kv.split("=") for kv in v.split()) for v in r.values("SRAT_MEM")]
    node_of = lambda addr: [int(m["node"]) for m in mems if int(m["flags"]) & 1
                            and int(m["base"], 16) <= addr < int(m["base"], 16) + int(m["len"], 16)]
    expect(node_of(0x200000) == [0] and node_of(0x9000000) == [1],
           f"SRAT memory: 2 MiB on node 0, 144 MiB on node 1: {mems}")
    expect(r.one("SLIT") == "2", "want 2 SLIT localities")
    expect(r.values("SLIT.0") == [f"10,{dist}"] and r.values("SLIT.1") == [f"{dist},10"],
           f"SLIT rows {r.values('SLIT.0')} {r.values('SLIT.1')}")
    started = r.one("STARTED").split()
    expect(started[0] == str(n), f"STARTED={started}, want {n}")
    expect(sorted(int(x) for x in started[1].split("=")[1].split(",")) == ids, f"AP IDs {started}")
    g.status(r, status_of(0x10))


# Checks whose guest is proven against QEMU's TCG where /dev/kvm is missing.
TCG_FALLBACK = {"topology"}


CHECKS = {
    "exit_now": check_exit_now, "hello": check_hello, "bootinfo": check_bootinfo, "smp": check_smp,
    "serial_echo": check_serial_echo, "rtc": check_rtc, "poweroff": check_poweroff,
    "reboot": check_reboot, "triple_fault": check_triple_fault, "ring3_loop": check_ring3_loop,
    "cpuid": check_cpuid, "bootinfo_modules": check_bootinfo_modules,
    "bootinfo_too_many_modules": check_bootinfo_too_many_modules, "topology": check_topology,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runner", required=True)
    ap.add_argument("--elf", required=True)
    ap.add_argument("--guest", required=True, choices=sorted(CHECKS), help="which check to run")
    ap.add_argument("--machine", default="q35")
    args = ap.parse_args()

    qemu = os.environ.get("QEMU", "qemu-system-x86_64")
    if not shutil.which(qemu):
        print(f"skipped: {qemu} is not installed (scripts/setup installs qemu-system-x86)")
        return SKIP
    tcg = False
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        if args.guest not in TCG_FALLBACK:
            print("skipped: /dev/kvm is not available to this user")
            return SKIP
        print("note: /dev/kvm is not available: running QEMU with -accel tcg -cpu max")
        tcg = True
    if not os.path.exists(args.elf):
        print(f"FAIL: guest image {args.elf} was not built")
        return 1

    g = Guest(args)
    if tcg:
        g.env["QEMU_ACCEL"] = "tcg"
    try:
        CHECKS[args.guest](g)
    except Failure as e:
        print(f"FAIL: {args.guest} ({os.path.basename(args.elf)}, -M {args.machine}): {e}")
        last = getattr(g, "last", None)
        if last is not None:
            print("---- serial output ----\n" + last.out + "---- qemu stderr ----\n" + g.stderr)
        return 1
    print(f"ok: {args.guest} ({os.path.basename(args.elf)}, -M {args.machine})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
