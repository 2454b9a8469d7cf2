"""skiff end to end on the purpose-built test guests (tests/guests/).

Each test boots a guest under the real skiff binary on /dev/kvm and checks
what the guest saw (boot information, CPUs, clock, serial) and how skiff
ended (exit status, log). Skipped, with the reason, where /dev/kvm is absent.
"""
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from skiff_run import SKIFF, guest, run_skiff  # noqa: E402

MIB = 1 << 20


def fnv1a64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def require_kvm(test):
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        raise unittest.SkipTest("skipped: /dev/kvm is not available on this host")


class BootProtocols(unittest.TestCase):
    def setUp(self):
        require_kvm(self)

    def check_bootinfo(self, fmt, proto):
        mem = 256 * MIB
        module = bytes(random.Random(7).getrandbits(8) for _ in range(300 * 1024 + 5))
        with tempfile.NamedTemporaryFile(suffix=".img") as f:
            f.write(module)
            f.flush()
            cmdline = "skiff-test arg=1 quoted=a,b"
            r = run_skiff(["--kernel", guest("bootinfo", fmt), "--memory", "size=256M",
                           "--cmdline", cmdline, "--initramfs", f.name])
        self.assertEqual(r.status, (0x10 << 1) | 1, r.serial + r.log)
        self.assertEqual(r.value("BOOTPROTO"), proto)
        self.assertEqual(r.value("CMDLINE"), cmdline)
        mods = r.values("MODULE")
        self.assertEqual(len(mods), 1, r.serial)
        addr, size, digest = mods[0].split()
        self.assertEqual(int(size), len(module))
        self.assertEqual(int(digest, 16), fnv1a64(module))
        self.assertEqual(int(addr, 16) % 4096, 0, "module not page aligned")
        self.assertGreaterEqual(int(addr, 16), MIB)
        self.assertLessEqual(int(addr, 16) + len(module), mem)

        ranges = self.memory_map(r)
        ram = [(s, l) for s, l, t in ranges if t == 1]
        self.assertEqual(ram[0][0], 0, ranges)
        self.assertTrue(any(s == MIB for s, _ in ram), ranges)
        self.assertEqual(sum(l for _, l in ram), mem - (MIB - 0x9FC00), ranges)
        self.assertTrue(all(s + l <= mem for s, l in ram), ranges)

    def memory_map(self, r):
        """The MEM= lines as sorted (start, length, type), checked for overlaps."""
        ranges = []
        for line in r.values("MEM"):
            start, length, typ = line.split()
            ranges.append((int(start, 16), int(length, 16), int(typ)))
        ranges.sort()
        self.assertTrue(ranges, "guest printed no memory map:\n" + r.serial)
        for (s1, l1, _), (s2, _, _) in zip(ranges, ranges[1:]):
            self.assertLessEqual(s1 + l1, s2, f"overlapping memory map entries: {ranges}")
        return ranges

    def test_pvh_guest_sees_memory_map_cmdline_and_module(self):
        self.check_bootinfo("pvh", "pvh")

    def test_multiboot_guest_sees_memory_map_cmdline_and_module(self):
        self.check_bootinfo("mb", "multiboot")

    def test_bzimage_guest_sees_memory_map_cmdline_and_initrd(self):
        if not os.path.exists(guest("bootinfo", "bz")):
            self.fail("bootinfo.bzImage (bzImage form of the bootinfo guest) was not built")
        self.check_bootinfo("bz", "bzimage")

    def test_memory_above_3gib_is_mapped_from_4gib(self):
        # 3.5 GiB: 3 GiB fit below the PCI hole (layout.h kPciHoleStart),
        # the other 512 MiB must appear at 4 GiB, in every boot protocol.
        mem = 3584 * MIB
        for fmt, proto in (("pvh", "pvh"), ("mb", "multiboot"), ("bz", "bzimage")):
            with self.subTest(fmt=fmt):
                r = run_skiff(["--kernel", guest("bootinfo", fmt), "--memory", "size=3584M"])
                self.assertEqual(r.status, 33, r.serial + r.log)
                self.assertEqual(r.value("BOOTPROTO"), proto)
                ranges = self.memory_map(r)
                ram = [(s, l) for s, l, t in ranges if t == 1]
                self.assertIn((1 << 32, 512 * MIB), ram, ranges)
                self.assertEqual(sum(l for _, l in ram), mem - (MIB - 0x9FC00), ranges)
                hole = [(s, l) for s, l in ram if s < 1 << 32 and s + l > 3 << 30]
                self.assertEqual(hole, [], f"RAM inside the PCI hole: {ranges}")
                self.assertEqual(max(s + l for s, l in ram), (1 << 32) + 512 * MIB, ranges)


class Smp(unittest.TestCase):
    def setUp(self):
        require_kvm(self)

    def test_every_vcpu_runs_code_after_init_sipi(self):
        for n in (1, 2, 4, 8):
            with self.subTest(cpus=n):
                r = run_skiff(["--kernel", guest("smp"), "--cpus", f"boot={n}", "--memory", "size=128M"],
                              timeout=120)
                self.assertEqual(r.status, 33, r.serial + r.log)
                m = re.search(r"CPUS=(\d+) STARTED=(\d+) APICIDS=([\d,]*)", r.serial)
                self.assertIsNotNone(m, r.serial)
                self.assertEqual(int(m.group(1)), n)
                self.assertEqual(int(m.group(2)), n)
                ids = sorted(int(x) for x in m.group(3).split(",") if x)
                self.assertEqual(ids, list(range(n)))


class Devices(unittest.TestCase):
    def setUp(self):
        require_kvm(self)

    def test_serial_output_and_input(self):
        r = run_skiff(["--kernel", guest("serial_echo"), "--memory", "size=64M"], stdin_data=b"hello skiff q")
        self.assertEqual(r.status, 33, r.serial + r.log)
        self.assertIn("READY", r.serial)
        self.assertIn("HELLO SKIFF ", r.serial)
        self.assertIn("DONE", r.serial)

    def test_serial_to_file(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "serial.log")
            r = run_skiff(["--kernel", guest("hello"), "--memory", "size=64M", "--serial", f"file={path}"],
                          serial_file=path)
        self.assertEqual(r.status, 33, r.log)
        self.assertIn("hello from guest", r.serial)

    def test_rtc_is_within_a_few_seconds_of_host_time(self):
        r = run_skiff(["--kernel", guest("rtc"), "--memory", "size=64M"])
        self.assertEqual(r.status, 33, r.serial + r.log)
        self.assertLess(abs(int(r.value("EPOCH")) - time.time()), 5, r.serial)

    def test_cpuid_advertises_kvm_and_apic_ids(self):
        r = run_skiff(["--kernel", guest("cpuid"), "--cpus", "boot=2", "--memory", "size=64M"])
        self.assertEqual(r.status, 33, r.serial + r.log)
        self.assertIn("HV=KVMKVMKVM", r.serial)

    def test_boot_marker_on_port_0x80_is_logged(self):
        r = run_skiff(["--kernel", guest("hello"), "--memory", "size=64M", "-v"])
        self.assertEqual(r.status, 33, r.log)
        self.assertRegex(r.log, r"boot marker 0x[0-9a-f]+ after [0-9.]+ ms")

    def test_boot_markers_of_every_image_format_in_order(self):
        # tests/guests/README.md: 0x01 at the entry, 0x02 before guest_main;
        # exit_now writes only 0x01.
        cases = [(guest("hello", f), 33, ["0x01", "0x02"]) for f in ("pvh", "mb", "bz")]
        cases += [(guest("exit_now", f), 1, ["0x01"]) for f in ("pvh", "mb")]
        for kernel, status, want in cases:
            with self.subTest(kernel=os.path.basename(kernel)):
                r = run_skiff(["--kernel", kernel, "--memory", "size=64M", "-v"])
                self.assertEqual(r.status, status, r.log)
                got = re.findall(r"boot marker (0x[0-9a-f]+) after ([0-9.]+) ms", r.log)
                self.assertEqual([v for v, _ in got], want, r.log)
                times = [float(t) for _, t in got]
                self.assertEqual(times, sorted(times), r.log)


class Lifecycle(unittest.TestCase):
    def setUp(self):
        require_kvm(self)

    def test_debug_exit_status(self):
        r = run_skiff(["--kernel", guest("hello"), "--memory", "size=64M"])
        self.assertEqual(r.status, 33, r.log)
        self.assertIn("hello from guest", r.serial)

    def test_acpi_poweroff_exits_0(self):
        r = run_skiff(["--kernel", guest("poweroff"), "--memory", "size=64M"])
        self.assertEqual(r.status, 0, r.serial + r.log)
        self.assertRegex(r.serial, r"POWEROFF via=sleep_control")

    def test_reboot_restarts_the_guest_and_cmos_survives(self):
        r = run_skiff(["--kernel", guest("reboot"), "--memory", "size=64M"], timeout=120)
        boots = [int(b) for b in r.values("BOOT")]
        self.assertEqual(boots, [1, 2, 3], r.serial + r.log)
        self.assertIn("REBOOT via=i8042", r.serial)
        self.assertIn("REBOOT via=acpi", r.serial)
        self.assertEqual(r.status, ((0x10 + 3) << 1) | 1, r.serial + r.log)

    def test_no_reboot_exits_0_on_the_first_reboot(self):
        r = run_skiff(["--kernel", guest("reboot"), "--memory", "size=64M", "--no-reboot"])
        self.assertEqual(r.status, 0, r.serial + r.log)
        self.assertEqual(r.values("BOOT"), ["1"], r.serial)

    def test_triple_fault_is_a_guest_failure_with_register_dump(self):
        r = run_skiff(["--kernel", guest("triple_fault"), "--memory", "size=64M"])
        self.assertEqual(r.status, 4, r.serial + r.log)
        self.assertIn("ABOUT TO FAULT", r.serial)
        self.assertRegex(r.log, r"RIP=[0-9a-f]{16}")
        self.assertRegex(r.log, r"code at RIP")

    def test_emulation_failure_is_a_guest_failure_with_instruction_bytes(self):
        r = run_skiff(["--kernel", guest("emulation_failure"), "--memory", "size=64M"])
        m = re.search(r"ABOUT TO EMULATE lock cmpxchg16b \(%rdi\) bytes=([0-9a-f ]+)", r.serial)
        self.assertIsNotNone(m, r.serial + r.log)
        # Intel SDM, CMPXCHG8B/CMPXCHG16B: LOCK (F0) REX.W (48) 0F C7 /1, ModRM 0F = [rdi].
        insn = "f0 48 0f c7 0f"
        self.assertEqual(m.group(1).strip(), insn)
        if not os.path.exists("/sys/module/kvm_pvm"):
            # Hardware virtualisation runs CPL-0 code natively: no emulation.
            self.assertEqual(r.status, 33, r.serial + r.log)
            self.assertIn("EXECUTED ok=1", r.serial)
            return
        self.assertEqual(r.status, 4, r.serial + r.log)
        self.assertNotIn("EXECUTED", r.serial)
        self.assertIn("emulation failure", r.log)
        self.assertRegex(r.log, rf"(instruction bytes|code at RIP \(phys 0x[0-9a-f]+\)): {insn}")

    def test_ring3_loop_runs_at_native_speed(self):
        r = run_skiff(["--kernel", guest("ring3_loop"), "--memory", "size=64M", "--cmdline", "iters=100000000"])
        self.assertEqual(r.status, 33, r.serial + r.log)
        self.assertIn("ok=1", r.serial)
        self.assertLess(r.seconds, 10, "a 10^8-iteration ring-3 loop should take well under a second here")


class Errors(unittest.TestCase):
    """Bad input gets exit status 2 and a message naming the bad value."""

    # The kernel files are read and identified before /dev/kvm is opened, so
    # these run (and give 2, not 6) on hosts without KVM too.
    def test_missing_kernel_file(self):
        r = run_skiff(["--kernel", "/nonexistent/vmlinuz"])
        self.assertEqual(r.status, 2, r.log)
        self.assertIn("/nonexistent/vmlinuz", r.log)
        self.assertEqual(len(r.log.strip().splitlines()), 1 + r.log.count("kvm_pvm"), r.log)

    def test_unrecognised_kernel_file(self):
        with tempfile.NamedTemporaryFile() as f:
            f.write(b"this is not a kernel" * 1000)
            f.flush()
            r = run_skiff(["--kernel", f.name])
        self.assertEqual(r.status, 2, r.log)
        self.assertIn(f.name, r.log)

    def test_bad_option_values(self):
        for args, named in ((["--cpus", "boot=0"], "boot"), (["--memory", "size=lots"], "lots"),
                            (["--serial", "carrier-pigeon"], "carrier-pigeon")):
            r = run_skiff(["--kernel", guest("hello")] + args)
            self.assertEqual(r.status, 2, r.log)
            self.assertIn(named, r.log)

    def run_without_dev_kvm(self, kernel):
        """skiff --kernel KERNEL with /dev hidden by an empty tmpfs in a mount namespace."""
        if os.geteuid() != 0 or subprocess.run(["which", "unshare"], capture_output=True).returncode:
            self.skipTest("skipped: needs root and unshare to hide /dev/kvm in a mount namespace")
        return subprocess.run(["unshare", "--mount", "sh", "-c",
                               f"mount -t tmpfs none /dev && exec {SKIFF} --kernel {kernel} --serial off"],
                              capture_output=True, timeout=30)

    def test_missing_dev_kvm_says_what_to_do(self):
        p = self.run_without_dev_kvm(guest("hello"))
        self.assertEqual(p.returncode, 6, p.stderr)
        self.assertIn(b"/dev/kvm", p.stderr)
        self.assertIn(b"modprobe", p.stderr)

    def test_bad_kernel_beats_missing_dev_kvm(self):
        # Same check with /dev/kvm hidden, so it holds on KVM hosts as well.
        p = self.run_without_dev_kvm("/nonexistent/vmlinuz")
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn(b"/nonexistent/vmlinuz", p.stderr)
        self.assertNotIn(b"/dev/kvm", p.stderr)

    def test_version_and_help(self):
        p = subprocess.run([SKIFF, "--version"], capture_output=True)
        self.assertEqual(p.returncode, 0)
        self.assertRegex(p.stdout.decode(), r"^skiff v\d+\.\d+\.\d+")


if __name__ == "__main__":
    unittest.main()
