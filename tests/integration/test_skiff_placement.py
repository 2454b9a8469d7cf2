"""skiff --cpus topology/max/affinity and --numa, end to end.

Topology and Affinity boot test guests under the real skiff on /dev/kvm
(skipped, with the reason, where it is missing): the topology guest reports
CPUID leaves 0xB/0x1F, the MADT, SRAT and SLIT and starts every AP at its
MADT APIC ID; the affinity test reads each running `vcpuN` thread's
allowed CPUs from /proc. Errors needs no KVM: bad placements are refused
before skiff opens /dev/kvm, with exit status 2 and the bad value named.
"""
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from skiff_run import SKIFF, guest, run_skiff  # noqa: E402


def require_kvm():
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        raise unittest.SkipTest("skipped: /dev/kvm is not available on this host")


def fields(line):
    return dict(kv.split("=", 1) for kv in line.split())


def apic_id(index, threads, cores, dies):
    """SDM Vol. 3A "Hierarchical Mapping of Shared Resources": each level's
    field just wide enough for its count."""
    width = lambda n: (n - 1).bit_length()
    t, c, d = width(threads), width(cores), width(dies)
    return (index % threads) | ((index // threads) % cores) << t \
        | ((index // (threads * cores)) % dies) << (t + c) \
        | (index // (threads * cores * dies)) << (t + c + d)


def cpu_list(text):
    """'0-2,5' -> [0, 1, 2, 5]."""
    out = []
    for part in text.strip().split(","):
        lo, _, hi = part.partition("-")
        out += range(int(lo), int(hi or lo) + 1)
    return out


class Topology(unittest.TestCase):
    def setUp(self):
        require_kvm()

    def test_guest_sees_topology_hotpluggable_cpus_and_numa_nodes(self):
        threads, cores, dies, packages = 1, 3, 1, 2
        boot, n, dist = 4, 6, 23
        r = run_skiff(["--kernel", guest("topology"), "--memory", "size=128M",
                       "--cpus", f"boot={boot},max={n},topology={threads}:{cores}:{dies}:{packages}",
                       "--numa", f"guest_numa_id=0,cpus=[0-{cores - 1}],distances=[1@{dist}]",
                       "--numa", f"guest_numa_id=1,cpus=[{cores}-{n - 1}],distances=[0@{dist + 1}]"])
        self.assertEqual(r.status, (0x10 << 1) | 1, r.serial + r.log)
        ids = [apic_id(i, threads, cores, dies) for i in range(n)]
        self.assertEqual(ids, [0, 1, 2, 4, 5, 6])
        madt = [fields(v) for v in r.values("MADT_CPU")]
        self.assertEqual([(int(m["uid"]), int(m["apic"])) for m in madt], list(enumerate(ids)))
        # Enabled for the boot vCPUs, Online Capable (ACPI 6.5 §5.2.12.2) above.
        self.assertEqual([int(m["flags"]) for m in madt], [1] * boot + [2] * (n - boot))
        self.assertEqual(r.value("LEAF1"), f"apicid=0 logical={threads * cores * dies}")
        self.assertEqual(r.values("LEAF0B.0"), ["type=1 shift=0 count=1 x2apic=0"])
        self.assertEqual(r.values("LEAF0B.1"), [f"type=2 shift=2 count={cores} x2apic=0"])
        if r.values("LEAF1F.0"):  # KVM offers leaf 0x1F on newer hosts
            self.assertEqual(r.values("LEAF1F.1"), [f"type=2 shift=2 count={cores} x2apic=0"])
        srat = sorted((int(f["apic"]), int(f["node"])) for f in map(fields, r.values("SRAT_CPU")))
        self.assertEqual(srat, [(a, 0 if i < cores else 1) for i, a in enumerate(ids)])
        mems = [fields(v) for v in r.values("SRAT_MEM")]
        self.assertTrue(mems and all(m["node"] == "0" for m in mems), mems)  # no zones: node 0
        self.assertEqual(sum(int(m["len"], 16) for m in mems), 128 << 20)
        self.assertEqual(r.value("SLIT"), "2")
        self.assertEqual(r.values("SLIT.0"), [f"10,{dist}"])
        self.assertEqual(r.values("SLIT.1"), [f"{dist + 1},10"])
        started = r.value("STARTED").split()
        self.assertEqual(started[0], str(boot))
        self.assertEqual(sorted(cpu_list(started[1].split("=")[1])),
                         sorted(ids[:boot]))


    def test_memory_zones_land_on_their_numa_nodes(self):
        mib = 1 << 20
        r = run_skiff(["--kernel", guest("topology"), "--memory", "size=0",
                       "--memory-zone", "id=near,size=48M", "--memory-zone", "id=far,size=80M",
                       "--cpus", "boot=2",
                       "--numa", "guest_numa_id=0,cpus=[0],memory_zones=[near]",
                       "--numa", "guest_numa_id=1,cpus=[1],memory_zones=[far]"])
        self.assertEqual(r.status, (0x10 << 1) | 1, r.serial + r.log)
        mems = sorted((int(m["base"], 16), int(m["len"], 16), int(m["node"]))
                      for m in map(fields, r.values("SRAT_MEM")))
        # Zones follow each other in guest physical order (docs/memory.md).
        self.assertEqual(mems, [(0, 48 * mib, 0), (48 * mib, 80 * mib, 1)])
        self.assertEqual(r.values("SLIT.0"), ["10,20"])
        self.assertEqual(r.values("SLIT.1"), ["20,10"])


class Affinity(unittest.TestCase):
    def setUp(self):
        require_kvm()

    def vcpu_threads(self, pid, want, timeout=20):
        """{vcpuN: Cpus_allowed_list} once `want` vcpu threads exist."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = {}
            for tid in os.listdir(f"/proc/{pid}/task"):
                try:
                    with open(f"/proc/{pid}/task/{tid}/comm") as f:
                        comm = f.read().strip()
                    if not comm.startswith("vcpu"):
                        continue
                    with open(f"/proc/{pid}/task/{tid}/status") as f:
                        allowed = [l.split(":", 1)[1] for l in f if l.startswith("Cpus_allowed_list")]
                    found[comm] = (cpu_list(allowed[0]), sorted(os.sched_getaffinity(int(tid))))
                except FileNotFoundError:
                    continue
            if len(found) == want:
                return found
            time.sleep(0.05)
        self.fail(f"skiff {pid} did not start {want} vcpu threads")

    def test_each_vcpu_thread_runs_on_its_host_cpus(self):
        host = sorted(os.sched_getaffinity(0))
        # vCPU 0 on the last usable CPU, vCPU 1 on the first (and, with more
        # CPUs, the second): different sets, so a swap would show.
        want = {"vcpu0": [host[-1]], "vcpu1": host[:2] if len(host) > 2 else host[:1]}
        spec = ",".join(f"{name[4:]}@[{','.join(map(str, cpus))}]" for name, cpus in want.items())
        p = subprocess.Popen([SKIFF, "--kernel", guest("ring3_loop"), "--cmdline", "iters=200000000000",
                              "--memory", "size=64M", "--serial", "off",
                              "--cpus", f"boot=3,affinity=[{spec}]"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            got = self.vcpu_threads(p.pid, 3)
        finally:
            p.kill()
            _, err = p.communicate()
        for name, cpus in want.items():
            self.assertEqual(got[name][0], cpus, f"{name} Cpus_allowed_list; log:\n{err.decode()}")
            self.assertEqual(got[name][1], cpus, f"{name} sched_getaffinity")
        # vCPU 2 is not pinned: it keeps skiff's own CPU set.
        self.assertEqual(got["vcpu2"][1], host)


class Errors(unittest.TestCase):
    """No KVM needed: refused before /dev/kvm is opened."""

    def refused(self, args, named):
        r = subprocess.run([SKIFF, "--kernel", guest("hello"), "--serial", "off"] + args,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        err = r.stderr.decode()
        self.assertEqual(r.returncode, 2, err)
        self.assertIn(named, err)
        return err

    def test_host_cpu_outside_skiffs_set_is_named(self):
        bad = max(os.sched_getaffinity(0)) + 1
        err = self.refused(["--cpus", f"boot=2,affinity=[0@[0],1@[{bad}]]"], f"host CPU {bad}")
        self.assertIn("vCPU 1", err)

    def test_topology_must_multiply_to_max(self):
        self.refused(["--cpus", "boot=2,max=4,topology=1:3:1:1"], "topology=1:3:1:1")

    def test_numa_node_ids_and_cpus_are_checked(self):
        self.refused(["--cpus", "boot=2", "--numa", "guest_numa_id=0,cpus=[0]",
                      "--numa", "guest_numa_id=2,cpus=[1]"], "guest_numa_id=2")
        self.refused(["--cpus", "boot=2", "--numa", "guest_numa_id=0,cpus=[0-2]"], "vCPU 2")
        self.refused(["--numa", "guest_numa_id=0,memory_zones=[nope]"], "memory zone 'nope'")

    def test_every_memory_zone_needs_a_node(self):
        self.refused(["--memory", "size=0", "--memory-zone", "id=a,size=32M",
                      "--memory-zone", "id=b,size=32M",
                      "--numa", "guest_numa_id=0,memory_zones=[a]"], "'b' belongs to no guest_numa_id")


if __name__ == "__main__":
    unittest.main()
