#!/usr/bin/env python3
"""Guest RAM options end to end, with the mem_walk test guest.

  skiff_memory_test.py qemu-ref   --elf mem_walk.pvh.elf
  skiff_memory_test.py short-pool --skiff SKIFF --elf mem_walk.pvh.elf
  skiff_memory_test.py hugepages  --skiff SKIFF --elf mem_walk.pvh.elf
  skiff_memory_test.py ksm        --skiff SKIFF --elf mem_walk.pvh.elf
  skiff_memory_test.py zones      --skiff SKIFF --elf bootinfo.pvh.elf
  skiff_memory_test.py file-zones --skiff SKIFF --elf mem_walk.pvh.elf

qemu-ref: the guest under QEMU with memfd-backed RAM, and with hugetlb=on when
the pool can be grown here (restored after), proves the guest right
(KVM when /dev/kvm is there, else -accel tcg -cpu max, said in the output).
short-pool: skiff asked for more 2 MiB pages than the pool has free refuses
with the documented message and exit status 6, before touching KVM (runs
anywhere). hugepages: the guest walks a buffer under skiff --memory
hugepages=on; the test grows /proc/sys/vm/nr_hugepages itself (restored
after) and reads skiff's /proc/PID/smaps while the guest runs: the RAM
mapping must be hugetlb with 2 MiB pages. Needs /dev/kvm (else a skip).
ksm: two skiff VMs run the same walk (identical buffers) with --memory
mergeable=on while ksmd runs (switched on here, restored after): both
processes must get pages merged (/proc/PID/ksm_merging_pages). Needs
/dev/kvm and KSM.
zones: the bootinfo guest under skiff with two --memory-zone entries (one
private, one shared) sees one contiguous RAM map of their total size.
Needs /dev/kvm.
file-zones: bad --memory-zone file= values are refused with exit 2 and the
value named, before RAM or KVM; a good one is created at the zone's size
(and the guest walks memory in it where there is /dev/kvm).
Exit 0 pass, 1 fail, 77 skipped.
"""
import argparse
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "guests"))
from guest_harness import fail, have_kvm, qemu_command, skip  # noqa: E402

OK_EXIT = (0x10 << 1) | 1
POOL = "/sys/kernel/mm/hugepages/hugepages-2048kB"


def walk_ok(out, where):
    m = re.search(r"WALK mib=(\d+) pages=(\d+) steps=(\d+) cycle=(\d) tsc_per_step=(\d+)", out)
    if not m:
        fail(f"{where}: no WALK line in the guest output:\n{out}")
    if m.group(4) != "1":
        fail(f"{where}: the walk did not cycle through every page: {m.group(0)}")
    print(f"{where}: {m.group(0)}")


def read_pool(name):
    with open(f"{POOL}/{name}") as f:
        return int(f.read())


def qemu_ref(a):
    def run(backend, where):
        cmd = qemu_command(a.elf, "mib=64 steps=200000", "-object",
                           f"memory-backend-memfd,id=ram,size=256M,share=on{backend}",
                           machine="microvm,memory-backend=ram")
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if r.returncode != OK_EXIT:
            fail(f"{where}: exit status {r.returncode} (want {OK_EXIT})\n{r.stdout}\n{r.stderr}")
        walk_ok(r.stdout, where)

    run("", "qemu memfd")
    # The benchmark's huge page command line (bench/memory/run.sh), when the
    # pool can be grown here.
    if not os.path.isdir(POOL):
        print("note: no 2 MiB huge pages on this kernel; hugetlb run left out")
        return
    old = read_pool("nr_hugepages")
    try:
        with open("/proc/sys/vm/nr_hugepages", "w") as f:
            f.write(str(old + 128))
    except OSError as e:
        print(f"note: cannot grow the huge page pool ({e}); hugetlb run left out")
        return
    try:
        if read_pool("free_hugepages") < 128:
            print("note: the kernel could not reserve 128 huge pages; hugetlb run left out")
            return
        run(",hugetlb=on,hugetlbsize=2M", "qemu memfd hugetlb")
    finally:
        with open("/proc/sys/vm/nr_hugepages", "w") as f:
            f.write(str(old))


def short_pool(a):
    if not os.path.isdir(POOL):
        skip("this kernel has no 2 MiB huge pages")
    free = read_pool("free_hugepages")
    want = max(free + 1, 8)  # at least --memory's 16 MiB minimum
    size = want * 2 << 20
    r = subprocess.run([a.skiff, "--kernel", a.elf, "--serial", "off",
                        "--memory", f"size={size},hugepages=on"],
                       capture_output=True, text=True, timeout=30)
    msg = (f"--memory hugepages=on: needs {want} 2 MiB pages, only {free} free in {POOL}; "
           f"reserve with echo ")
    if r.returncode != 6 or msg not in r.stderr or "> /proc/sys/vm/nr_hugepages" not in r.stderr:
        fail(f"skiff exit status {r.returncode} (want 6), stderr:\n{r.stderr}\nwanted: {msg}")
    print(f"refused as documented: {r.stderr.strip().splitlines()[-1]}")


def hugetlb_mapping(pid):
    """The smaps entry of skiff's guest RAM memfd, or None."""
    try:
        with open(f"/proc/{pid}/smaps") as f:
            text = f.read()
    except OSError:
        return None
    for entry in re.split(r"\n(?=[0-9a-f]+-[0-9a-f]+ )", text):
        if "memfd:skiff-ram" in entry.splitlines()[0]:
            return entry
    return None


def hugepages(a):
    need_kvm()
    if not os.path.isdir(POOL):
        skip("this kernel has no 2 MiB huge pages")
    pages = 128  # 256 MiB of guest RAM
    old = read_pool("nr_hugepages")
    try:
        with open("/proc/sys/vm/nr_hugepages", "w") as f:
            f.write(str(old + pages))
    except OSError as e:
        skip(f"cannot grow the huge page pool ({e}); needs root")
    try:
        if read_pool("free_hugepages") < pages:
            skip(f"the kernel could not reserve {pages} free 2 MiB pages")
        p = subprocess.Popen([a.skiff, "--kernel", a.elf, "--serial", "tty",
                              "--memory", "size=256M,hugepages=on",
                              "--cmdline", "mib=128 steps=30000000"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        entry = None
        while p.poll() is None and entry is None:
            entry = hugetlb_mapping(p.pid)
            time.sleep(0.01)
        out, err = p.communicate(timeout=120)
        if p.returncode != OK_EXIT:
            fail(f"skiff exit status {p.returncode} (want {OK_EXIT})\n{out}\n{err}")
        walk_ok(out, "skiff hugepages=on")
        if entry is None:
            fail("never saw skiff's memfd:skiff-ram mapping in /proc/PID/smaps")
        if "KernelPageSize:     2048 kB" not in entry:
            fail(f"guest RAM is not on 2 MiB pages:\n{entry}")
        print("skiff's guest RAM mapping is hugetlb, KernelPageSize 2048 kB")
    finally:
        with open("/proc/sys/vm/nr_hugepages", "w") as f:
            f.write(str(old))


def need_kvm():
    if not have_kvm():
        skip("no /dev/kvm: skiff cannot run the guest here")


def ksm(a):
    need_kvm()
    k = "/sys/kernel/mm/ksm/"
    if not os.path.isdir(k):
        skip("no /sys/kernel/mm/ksm (CONFIG_KSM off)")
    saved = {}
    try:
        for name, value in (("pages_to_scan", "5000"), ("sleep_millisecs", "10"), ("run", "1")):
            with open(k + name) as f:
                saved[name] = f.read().strip()
            with open(k + name, "w") as f:
                f.write(value)
    except OSError as e:
        skip(f"cannot switch ksmd on ({e}); needs root")
    vms = []
    try:
        # A long walk keeps both VMs alive while ksmd scans; killed below.
        for _ in range(2):
            vms.append(subprocess.Popen(
                [a.skiff, "--kernel", a.elf, "--serial", "off", "--memory", "size=256M,mergeable=on",
                 "--cmdline", "mib=64 steps=100000000000"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        deadline = time.monotonic() + 60
        merged = [0, 0]
        while time.monotonic() < deadline and min(merged) < 4096:
            for i, p in enumerate(vms):
                if p.poll() is not None:
                    fail(f"skiff {i} exited early with {p.returncode}: {p.stderr.read()}")
                with open(f"/proc/{p.pid}/ksm_merging_pages") as f:
                    merged[i] = int(f.read())
            time.sleep(0.2)
        print(f"pages merged by KSM: {merged[0]} and {merged[1]}")
        if min(merged) < 4096:
            fail("KSM merged fewer than 4096 pages (16 MiB) in each VM within 60 s")
    finally:
        for p in vms:
            p.kill()
            p.wait()
        for name in ("run", "sleep_millisecs", "pages_to_scan"):
            if name in saved:
                with open(k + name, "w") as f:
                    f.write(saved[name])


def zones(a):
    need_kvm()
    r = subprocess.run([a.skiff, "--kernel", a.elf, "--memory-zone", "id=a,size=64M",
                        "--memory-zone", "id=b,size=96M,shared=on"],
                       capture_output=True, text=True, timeout=60)
    ram = [l.split() for l in r.stdout.splitlines() if l.startswith("MEM=") and l.endswith(" 1")]
    total = sum(int(f[1], 16) for f in ram)
    end = max((int(f[0][4:], 16) + int(f[1], 16) for f in ram), default=0)
    print(f"guest RAM map: {len(ram)} ranges, {total >> 20} MiB, ending at {end:#x}")
    if end != 160 << 20:
        fail(f"guest RAM should end at 160 MiB (64 + 96):\n{r.stdout}\n{r.stderr}")


def file_zones(a):
    """--memory-zone file=: bad paths are usage errors (exit 2) before any
    RAM or /dev/kvm; a good one gets past RAM setup (the file is created at
    the zone's size) and the guest runs from it where there is KVM."""
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        small = os.path.join(d, "small")
        with open(small, "wb") as f:
            f.write(b"\1" * 4096)
        cases = [
            (f"file={d}/no/such/ram,shared=on", f"file={d}/no/such/ram: directory {d}/no/such does not exist"),
            ("file=/dev/null,shared=on", "file=/dev/null is a character device"),
            (f"file={d}/missing", f"file={d}/missing does not exist: with shared=off the file is only read"),
            (f"file={small}", f"file={small} has 4096 bytes, fewer than size=67108864"),
            (f"file={d},hugepages=on", f"file={d} with hugepages=on: give one of them"),
        ]
        for opts, msg in cases:
            r = subprocess.run([a.skiff, "--kernel", a.elf, "--serial", "off", "--memory", "size=0",
                                "--memory-zone", f"id=z,size=64M,{opts}"],
                               capture_output=True, text=True, timeout=30)
            if r.returncode != 2 or f"--memory-zone id=z: {msg}" not in r.stderr:
                fail(f"{opts}: skiff exit status {r.returncode} (want 2), stderr:\n{r.stderr}\n"
                     f"wanted: --memory-zone id=z: {msg}")
            print(f"refused with exit 2: {r.stderr.strip().splitlines()[-1]}")
        if os.path.exists(os.path.join(d, "missing")) or os.path.getsize(small) != 4096:
            fail("a refused file= zone created or changed a file")
        # --memory has no file= in Cloud Hypervisor either.
        r = subprocess.run([a.skiff, "--kernel", a.elf, "--memory", f"size=64M,file={d}"],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 2 or "is a --memory-zone option" not in r.stderr:
            fail(f"--memory file=: exit status {r.returncode} (want 2), stderr:\n{r.stderr}")

        ram = os.path.join(d, "ram")
        r = subprocess.run([a.skiff, "--kernel", a.elf, "--cmdline", "mib=16 steps=100000",
                            "--memory", "size=0", "--memory-zone", f"id=z,size=64M,file={ram},shared=on"],
                           capture_output=True, text=True, timeout=120)
        if not os.path.exists(ram) or os.path.getsize(ram) != 64 << 20:
            fail(f"file={ram} was not created at 64 MiB (exit {r.returncode}):\n{r.stderr}")
        if not have_kvm():
            if r.returncode != 6 or "/dev/kvm" not in r.stderr:
                fail(f"without /dev/kvm skiff should stop at KVM (exit 6), got {r.returncode}:\n"
                     f"{r.stderr}")
            print("file zone set up; no /dev/kvm here, so the guest run is left out (exit 6 at KVM)")
            return
        if r.returncode != OK_EXIT:
            fail(f"skiff exit status {r.returncode} (want {OK_EXIT})\n{r.stdout}\n{r.stderr}")
        walk_ok(r.stdout, "skiff file zone")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode",
                    choices=["qemu-ref", "short-pool", "hugepages", "ksm", "zones", "file-zones"])
    ap.add_argument("--elf", required=True)
    ap.add_argument("--skiff")
    a = ap.parse_args()
    if not os.path.exists(a.elf):
        fail(f"{a.elf} is missing (build the skiff_guests target)")
    {"qemu-ref": qemu_ref, "short-pool": short_pool, "hugepages": hugepages, "ksm": ksm,
     "zones": zones, "file-zones": file_zones}[a.mode](a)
    print("PASS")


if __name__ == "__main__":
    main()
