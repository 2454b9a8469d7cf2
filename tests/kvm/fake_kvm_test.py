"""The whole skiff process on hosts without /dev/kvm, KVM answered by fake_kvm.c.

Every other test that runs the skiff binary on a guest needs /dev/kvm. These
run the same command line path (options, Machine::create, guest memory, the
boot protocols' loaders, vCPU threads, the exit port, tear-down) with
tests/kvm/fake_kvm.c preloaded, and check what skiff hands to the first
KVM_RUN: the memory slots, the entry registers each boot protocol specifies
(../shared/specs/linux-x86-boot.rst, the PVH and Multiboot specifications)
and the structures the registers point at, followed through a copy of guest
RAM to the command line, the memory map and the initramfs bytes (the same
facts the kvm-labelled guest tests have the guests print, which need
/dev/kvm). fake_kvm's first KVM_RUN reports
an `out 0xf4` of 0, so skiff must exit 1.
"""
import hashlib
import os
import struct
import subprocess
import tempfile
import unittest

BUILD_DIR = os.environ.get("SKIFF_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build/main"))
SKIFF = os.path.join(BUILD_DIR, "src/cli/skiff")
GUESTS = os.path.join(BUILD_DIR, "tests/guests")
FAKE_KVM = os.path.join(BUILD_DIR, "tests/kvm/libskiff_fake_kvm.so")

MiB = 1 << 20
GiB = 1 << 30


class Ram:
    """Guest RAM below the PCI hole as skiff left it for the first KVM_RUN."""

    def __init__(self, path):
        with open(path, "rb") as f:
            self.data = f.read()

    def bytes(self, gpa, n):
        if gpa + n > len(self.data):
            raise AssertionError(f"[{gpa:#x}, {gpa + n:#x}) is not in guest RAM")
        return self.data[gpa:gpa + n]

    def cstring(self, gpa):
        end = self.data.index(b"\0", gpa)
        return self.data[gpa:end].decode()


def run_skiff(kernel, *args, ram=False, exits=None):
    """Runs skiff on a guest under fake_kvm; returns (status, report dict, stderr).

    With ram=True the report's "ram" is a Ram of slot 0. `exits` scripts
    vCPU 0's exits (SKIFF_FAKE_KVM_EXITS; default: out 0xf4, 0)."""
    with tempfile.TemporaryDirectory() as tmp:
        report_path = os.path.join(tmp, "report")
        env = dict(os.environ, LD_PRELOAD=FAKE_KVM, SKIFF_FAKE_KVM_REPORT=report_path)
        if exits:
            env["SKIFF_FAKE_KVM_EXITS"] = exits
        if ram:
            env["SKIFF_FAKE_KVM_RAM"] = os.path.join(tmp, "ram")
        # An ASan build wants its runtime first; the preloaded stand-in is plain C.
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"
        proc = subprocess.run([SKIFF, "--kernel", os.path.join(GUESTS, kernel), "--serial", "off", *args],
                              env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        report = {"slots": []}
        if os.path.exists(report_path):
            with open(report_path) as f:
                lines = f.read().splitlines()
            for line in lines:
                key, _, value = line.strip().partition(" ")
                if key == "slot":
                    _, gpa, size = value.split()
                    report["slots"].append((int(gpa, 16), int(size, 16)))
                elif key.startswith("at_"):
                    report[key] = None if value == "none" else bytes.fromhex(value)
                else:
                    report[key] = int(value, 16) if value.startswith("0x") else int(value)
        if ram and os.path.exists(env["SKIFF_FAKE_KVM_RAM"]):
            report["ram"] = Ram(env["SKIFF_FAKE_KVM_RAM"])
    return proc.returncode, report, proc.stderr


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def elf_notes(path):
    """(type, desc) of every note in an ELF file's PT_NOTE segments."""
    data = read_bytes(path)
    is64 = data[4] == 2
    if is64:
        phoff, = struct.unpack_from("<Q", data, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    else:
        phoff, = struct.unpack_from("<I", data, 0x1c)
        phentsize, phnum = struct.unpack_from("<HH", data, 0x2a)
    notes = []
    for i in range(phnum):
        ph = phoff + i * phentsize
        p_type, = struct.unpack_from("<I", data, ph)
        if p_type != 4:  # PT_NOTE
            continue
        if is64:
            off, = struct.unpack_from("<Q", data, ph + 8)
            size, = struct.unpack_from("<Q", data, ph + 32)
        else:
            off, size = struct.unpack_from("<I", data, ph + 4)[0], struct.unpack_from("<I", data, ph + 16)[0]
        pos = off
        while pos + 12 <= off + size:
            namesz, descsz, ntype = struct.unpack_from("<III", data, pos)
            desc = pos + 12 + ((namesz + 3) & ~3)
            notes.append((ntype, data[desc:desc + descsz]))
            pos = desc + ((descsz + 3) & ~3)
    return notes


def elf_bytes_at(path, vaddr, n):
    """n bytes of an ELF64 file's loadable segment at vaddr."""
    data = read_bytes(path)
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        if p_type == 1 and p_vaddr <= vaddr < p_vaddr + p_filesz:
            return data[p_offset + vaddr - p_vaddr:p_offset + vaddr - p_vaddr + n]
    raise AssertionError(f"{path} loads nothing at {vaddr:#x}")


def elf_entry(path):
    data = read_bytes(path)
    return struct.unpack_from("<Q" if data[4] == 2 else "<I", data, 0x18)[0]


class SkiffUnderFakeKvm(unittest.TestCase):
    def setUp(self):
        for path in (SKIFF, FAKE_KVM):
            if not os.path.exists(path):
                self.fail(f"{path} is missing: build the skiff and skiff_fake_kvm targets")

    def boot(self, kernel, *args, ram=False):
        status, report, stderr = run_skiff(kernel, *args, ram=ram)
        self.assertEqual(status, 1, f"skiff should exit (0 << 1) | 1 at the guest's out 0xf4; stderr:\n{stderr}")
        self.assertIn("rip", report, f"no KVM_RUN reached; stderr:\n{stderr}")
        return report


# The registers and memory slots each boot protocol starts the guest with.
class EntryState(SkiffUnderFakeKvm):
    def test_pvh_enters_at_the_note_entry_in_32_bit_protected_mode_with_start_info_in_rbx(self):
        r = self.boot("exit_now.pvh.elf", "--memory", "size=128M")
        self.assertEqual(r["slots"], [(0, 128 * MiB)])
        entry = [d for t, d in elf_notes(os.path.join(GUESTS, "exit_now.pvh.elf")) if t == 18]  # PHYS32_ENTRY
        self.assertEqual(len(entry), 1)
        self.assertEqual(r["rip"], struct.unpack_from("<I", entry[0])[0])
        self.assertEqual(r["cr0"] & 0x80000001, 1, "protected mode, paging off")
        self.assertEqual((r["cs_db"], r["cs_l"]), (1, 0), "32-bit code segment")
        info = r["at_rbx"]
        self.assertIsNotNone(info, "rbx must point into guest RAM")
        magic, version, _flags, nr_modules = struct.unpack_from("<IIII", info, 0)
        rsdp, memmap, memmap_entries = struct.unpack_from("<QQI", info, 0x20)
        self.assertEqual(magic, 0x336EC578)
        self.assertGreaterEqual(version, 1, "version 1 carries the memory map")
        self.assertEqual(nr_modules, 0, "no --initramfs")
        self.assertTrue(rsdp and memmap, "ACPI RSDP and memory map addresses")
        self.assertGreaterEqual(memmap_entries, 2)

    def test_multiboot_enters_at_the_elf_entry_with_the_magic_and_info_in_ebx(self):
        r = self.boot("exit_now.mb.elf", "--memory", "size=256M", "--cmdline", "fake kvm")
        self.assertEqual(r["rax"], 0x2BADB002)
        self.assertEqual(r["rip"], elf_entry(os.path.join(GUESTS, "exit_now.mb.elf")))
        self.assertEqual(r["cr0"] & 0x80000001, 1)
        info = r["at_rbx"]
        self.assertIsNotNone(info)
        flags, mem_lower, mem_upper = struct.unpack_from("<III", info, 0)
        for bit, what in ((0, "mem_lower/upper"), (2, "cmdline"), (6, "mmap")):
            self.assertTrue(flags & (1 << bit), f"flags {flags:#x} lack {what}")
        self.assertEqual(mem_lower, 639)
        # mem_upper: KiB from 1 MiB up to the first hole, so all but the first MiB.
        self.assertEqual(mem_upper, (256 * MiB - MiB) // 1024)

    def test_bzimage_enters_the_64_bit_entry_in_long_mode_with_the_zero_page_in_rsi(self):
        r = self.boot("hello.bzImage", "--memory", "size=128M", "--cmdline", "console=ttyS0")
        self.assertEqual(r["efer"] & 0x500, 0x500, "EFER.LME and LMA")
        self.assertEqual(r["cr0"] & 0x80000001, 0x80000001, "paging and protection on")
        self.assertTrue(r["cr4"] & 0x20, "CR4.PAE")
        self.assertEqual(r["cs_l"], 1, "64-bit code segment")
        zero_page = r["at_rsi"]
        self.assertIsNotNone(zero_page, "rsi must point into guest RAM")
        self.assertEqual(zero_page[0x202:0x206], b"HdrS")
        code32_start, = struct.unpack_from("<I", zero_page, 0x214)
        self.assertEqual(r["rip"], code32_start + 0x200, "the 64-bit entry is startup_32 + 0x200")
        self.assertNotEqual(zero_page[0x210], 0, "type_of_loader must be set")
        self.assertGreaterEqual(zero_page[0x1E8], 2, "e820 entries")
        cmd_line_ptr, = struct.unpack_from("<I", zero_page, 0x228)
        self.assertNotEqual(cmd_line_ptr, 0)

    def test_ram_beyond_the_pci_hole_is_a_second_slot_above_4_gib(self):
        r = self.boot("exit_now.pvh.elf", "--memory", "size=5G")
        self.assertEqual(r["slots"], [(0, 3 * GiB), (4 * GiB, 2 * GiB)])

    def test_application_processors_waiting_in_kvm_run_are_stopped_at_exit(self):
        # fake_kvm keeps vCPUs 1-3 inside KVM_RUN until skiff kicks them:
        # exiting must interrupt and join them, not hang.
        self.boot("exit_now.pvh.elf", "--memory", "size=128M", "--cpus", "boot=4")



# Each protocol's structures, followed from the entry registers to the
# memory map, the command line and the initramfs/module bytes.
class BootData(SkiffUnderFakeKvm):
    CMDLINE = "console=ttyS0 fake_kvm=1 x=" + "y" * 300

    def setUp(self):
        super().setUp()
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.initrd = os.path.join(tmp.name, "initrd")
        # Not a multiple of a page, so a loader that rounds shows.
        self.initrd_bytes = os.urandom(300 * 1024 + 123)
        with open(self.initrd, "wb") as f:
            f.write(self.initrd_bytes)

    def assert_module(self, ram, gpa, size):
        self.assertEqual(size, len(self.initrd_bytes))
        self.assertEqual(hashlib.sha256(ram.bytes(gpa, size)).hexdigest(),
                         hashlib.sha256(self.initrd_bytes).hexdigest(), "initramfs bytes in guest RAM")

    def assert_ram_map(self, ram_ranges, mem_bytes, *inside):
        """RAM entries: none overlapping, none past the guest's RAM, adding up
        to all of it but the legacy holes, and holding each (gpa, size)."""
        ram_ranges = sorted(ram_ranges)
        for (a, n), (b, _) in zip(ram_ranges, ram_ranges[1:]):
            self.assertLessEqual(a + n, b, f"RAM entries overlap: {ram_ranges}")
        total = sum(n for _, n in ram_ranges)
        self.assertLessEqual(total, mem_bytes)
        self.assertGreater(total, mem_bytes - 1 * MiB, "the map hides RAM beyond the legacy hole")
        for gpa, size in inside:
            self.assertTrue(any(a <= gpa and gpa + size <= a + n for a, n in ram_ranges),
                            f"[{gpa:#x}, +{size:#x}) is not in a RAM entry of {ram_ranges}")

    def test_pvh_start_info_points_at_the_cmdline_the_module_and_the_memory_map(self):
        r = self.boot("exit_now.pvh.elf", "--memory", "size=128M", "--initramfs", self.initrd,
                      "--cmdline", self.CMDLINE, ram=True)
        ram = r["ram"]
        _, _, _, nr_modules, modlist, cmdline, _, memmap, entries = struct.unpack_from(
            "<IIIIQQQQI", ram.bytes(r["rbx"], 52))
        self.assertEqual(ram.cstring(cmdline), self.CMDLINE)
        self.assertEqual(nr_modules, 1)
        paddr, size, _, _ = struct.unpack_from("<QQQQ", ram.bytes(modlist, 32))
        self.assert_module(ram, paddr, size)
        table = [struct.unpack_from("<QQI", ram.bytes(memmap + 24 * i, 20)) for i in range(entries)]
        self.assert_ram_map([(a, n) for a, n, t in table if t == 1], 128 * MiB, (paddr, size),
                            (r["rbx"], 56), (0x100000, 4096))

    def test_bzimage_zero_page_points_at_the_cmdline_the_initrd_and_holds_the_e820_map(self):
        r = self.boot("hello.bzImage", "--memory", "size=128M", "--initramfs", self.initrd,
                      "--cmdline", self.CMDLINE, ram=True)
        ram, zp = r["ram"], r["at_rsi"]
        cmd_line_ptr, = struct.unpack_from("<I", zp, 0x228)
        image, size = struct.unpack_from("<II", zp, 0x218)
        initrd_addr_max, = struct.unpack_from("<I", zp, 0x22C)
        self.assertEqual(struct.unpack_from("<II", zp, 0xC0), (0, 0),
                         "an initrd below 4 GiB leaves ext_ramdisk_image/size 0")
        self.assertEqual(ram.cstring(cmd_line_ptr), self.CMDLINE)
        self.assert_module(ram, image, size)
        self.assertLessEqual(image + size - 1, initrd_addr_max, "initrd above initrd_addr_max")
        n = zp[0x1E8]
        full = ram.bytes(r["rsi"], 0x2D0 + 20 * n)
        table = [struct.unpack_from("<QQI", full, 0x2D0 + 20 * i) for i in range(n)]
        self.assert_ram_map([(a, s) for a, s, t in table if t == 1], 128 * MiB, (image, size),
                            (cmd_line_ptr, len(self.CMDLINE) + 1), (r["rip"], 16))

    def test_multiboot_info_points_at_the_cmdline_the_module_and_the_memory_map(self):
        r = self.boot("exit_now.mb.elf", "--memory", "size=128M", "--initramfs", self.initrd,
                      "--cmdline", self.CMDLINE, ram=True)
        ram = r["ram"]
        info = ram.bytes(r["rbx"], 52)
        flags, = struct.unpack_from("<I", info, 0)
        self.assertTrue(flags & (1 << 3), "flags lack mods")
        cmdline, mods_count, mods_addr = struct.unpack_from("<III", info, 16)
        mmap_length, mmap_addr = struct.unpack_from("<II", info, 44)
        self.assertEqual(ram.cstring(cmdline), self.CMDLINE)
        self.assertEqual(mods_count, 1)
        mod_start, mod_end, _, _ = struct.unpack_from("<IIII", ram.bytes(mods_addr, 16))
        self.assert_module(ram, mod_start, mod_end - mod_start)
        entries, pos, raw = [], 0, ram.bytes(mmap_addr, mmap_length)
        while pos < mmap_length:
            size, base, length, kind = struct.unpack_from("<IQQI", raw, pos)
            entries.append((base, length, kind))
            pos += size + 4
        self.assert_ram_map([(a, n) for a, n, t in entries if t == 1], 128 * MiB,
                            (mod_start, mod_end - mod_start), (r["rbx"], 52))



# What skiff does on each kind of exit (README "Exit status"): vCPU 0's
# exits scripted through the stand-in, the registers a write to the ports
# the guest's own ACPI tables name.
class Exits(SkiffUnderFakeKvm):
    PVH = "exit_now.pvh.elf"

    def exit_with(self, exits, *args):
        status, _, stderr = run_skiff(self.PVH, "--memory", "size=128M", *args, exits=exits)
        return status, stderr

    def acpi(self):
        """(sleep control port, S5 sleep type, reset port, reset value) from
        the FADT and DSDT skiff gives the guest, found from hvm_start_info's
        RSDP as a guest OS finds them."""
        r = self.boot(self.PVH, "--memory", "size=128M", ram=True)
        ram = r["ram"]
        rsdp, = struct.unpack_from("<Q", ram.bytes(r["rbx"], 40), 0x20)
        self.assertEqual(ram.bytes(rsdp, 8), b"RSD PTR ")
        xsdt, = struct.unpack_from("<Q", ram.bytes(rsdp, 32), 24)
        length, = struct.unpack_from("<I", ram.bytes(xsdt, 8), 4)
        tables = {}
        for (addr,) in struct.iter_unpack("<Q", ram.bytes(xsdt + 36, length - 36)):
            tables[ram.bytes(addr, 4)] = addr
        fadt = ram.bytes(tables[b"FACP"], 276)
        # Generic Address Structures: space (1 = I/O), width, offset, access size, address.
        reset_space, _, _, _, reset_port = struct.unpack_from("<BBBBQ", fadt, 116)
        sleep_space, _, _, _, sleep_port = struct.unpack_from("<BBBBQ", fadt, 244)
        self.assertEqual((reset_space, sleep_space), (1, 1), "reset and sleep control in I/O space")
        dsdt_addr, = struct.unpack_from("<Q", fadt, 140)  # X_DSDT
        dsdt = ram.bytes(dsdt_addr, struct.unpack_from("<I", ram.bytes(dsdt_addr, 8), 4)[0])
        # Name(_S5_, Package(n) {type, ...}): PackageOp, 1-byte PkgLength,
        # NumElements, then the type as BytePrefix n, ZeroOp or OneOp.
        at = dsdt.index(b"_S5_\x12") + 7
        s5 = dsdt[at + 1] if dsdt[at] == 0x0A else {0x00: 0, 0x01: 1}[dsdt[at]]
        return sleep_port, s5, reset_port, fadt[128]

    def test_a_triple_fault_is_a_guest_failure_with_the_registers_and_the_code_at_rip(self):
        status, stderr = self.exit_with("shutdown")
        self.assertEqual(status, 4, stderr)
        self.assertIn("triple fault", stderr)
        entry = struct.unpack_from("<I", [d for t, d in elf_notes(os.path.join(GUESTS, self.PVH)) if t == 18][0])[0]
        self.assertIn(f"RIP={entry:016x}", stderr)
        code = " ".join(f"{b:02x}" for b in elf_bytes_at(os.path.join(GUESTS, self.PVH), entry, 8))
        self.assertIn(f"code at RIP (phys {entry:#x}): {code}", stderr)

    def test_an_emulation_failure_is_a_guest_failure_naming_the_instruction_bytes(self):
        status, stderr = self.exit_with("emulation")
        self.assertEqual(status, 4, stderr)
        self.assertIn("could not emulate an instruction", stderr)
        self.assertIn("instruction bytes: 0f 0b", stderr)
        self.assertIn("RIP=", stderr)

    def test_the_debug_exit_port_gives_v_shifted_left_plus_one(self):
        self.assertEqual(self.exit_with("io:0xf4:0x2a")[0], (0x2A << 1) | 1)

    def test_the_i8042_reset_line_restarts_the_guest_and_no_reboot_exits_0(self):
        # Restarted, the guest runs again and exits through the port.
        status, stderr = self.exit_with("io:0x64:0xfe,io:0xf4:0x07", "-v")
        self.assertEqual(status, 15, stderr)
        self.assertIn("restarting", stderr)
        self.assertEqual(self.exit_with("io:0x64:0xfe", "--no-reboot")[0], 0)

    def test_the_fadt_reset_register_restarts_the_guest_and_s5_powers_off(self):
        sleep_port, s5, reset_port, reset_value = self.acpi()
        status, stderr = self.exit_with(f"io:{reset_port}:{reset_value},io:0xf4:0x03")
        self.assertEqual(status, 7, stderr)
        self.assertEqual(self.exit_with(f"io:{reset_port}:{reset_value}", "--no-reboot")[0], 0)
        # SLP_EN (bit 5) with SLP_TYP (bits 2-4) = \_S5's value: off, status 0.
        self.assertEqual(self.exit_with(f"io:{sleep_port}:{0x20 | s5 << 2}")[0], 0)
        # Another sleep type is not S5: the guest goes on (to the exit port).
        self.assertEqual(self.exit_with(f"io:{sleep_port}:{0x20 | ((s5 + 1) & 7) << 2},io:0xf4:0x01")[0], 3)


if __name__ == "__main__":
    unittest.main()
