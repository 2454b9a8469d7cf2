#!/usr/bin/env python3
"""Checks the built guest images' headers, without running them.

  guest_images_test.py GUESTS_DIR

- <name>.mb.elf: ELF32 with a valid Multiboot v1 header in the first 8 KiB,
  and no XEN_ELFNOTE_PHYS32_ENTRY note, neither as a section nor through a
  PT_NOTE (a loader that prefers PVH would otherwise boot it as PVH);
- <name>.pvh.elf: ELF64 with the note, pointing at pvh_entry's address;
- <name>.bzImage: the setup header mkbzimage.py writes (boot.rst), the
  64-bit entry at +0x200 of the protected-mode kernel, init_size covering
  the linked image's .bss; and mkbzimage.py refusing bad inputs.
"""
import os
import struct
import subprocess
import sys
import tempfile
import unittest

GUESTS = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("SKIFF_GUESTS_DIR", "")
HERE = os.path.dirname(os.path.abspath(__file__))
XEN_ELFNOTE_PHYS32_ENTRY = 18


def read(path):
    with open(path, "rb") as f:
        return f.read()


class Elf:
    """Just enough ELF32/ELF64 (little-endian) for program headers, sections and notes."""

    def __init__(self, data):
        assert data[:4] == b"\x7fELF", "not an ELF file"
        self.data = data
        self.is64 = data[4] == 2
        if self.is64:
            (self.entry, self.phoff, self.shoff) = struct.unpack_from("<QQQ", data, 0x18)
            self.phentsize, self.phnum, self.shentsize, self.shnum, self.shstrndx = struct.unpack_from(
                "<HHHHH", data, 0x36)
        else:
            (self.entry, self.phoff, self.shoff) = struct.unpack_from("<III", data, 0x18)
            self.phentsize, self.phnum, self.shentsize, self.shnum, self.shstrndx = struct.unpack_from(
                "<HHHHH", data, 0x2a)

    def phdrs(self):
        """(type, offset, vaddr, filesz, memsz) per program header."""
        out = []
        for i in range(self.phnum):
            off = self.phoff + i * self.phentsize
            if self.is64:
                t, _, o, v, _, fs, ms, _ = struct.unpack_from("<IIQQQQQQ", self.data, off)
            else:
                t, o, v, _, fs, ms, _, _ = struct.unpack_from("<IIIIIIII", self.data, off)
            out.append((t, o, v, fs, ms))
        return out

    def sections(self):
        """{name: (type, offset, size)}."""
        raw = []
        for i in range(self.shnum):
            off = self.shoff + i * self.shentsize
            if self.is64:
                name, t, _, _, o, size = struct.unpack_from("<IIQQQQ", self.data, off)
            else:
                name, t, _, _, o, size = struct.unpack_from("<IIIIII", self.data, off)
            raw.append((name, t, o, size))
        strtab = raw[self.shstrndx][2]
        out = {}
        for name, t, o, size in raw:
            end = self.data.index(b"\0", strtab + name)
            out[self.data[strtab + name:end].decode()] = (t, o, size)
        return out

    def symbols(self):
        secs = self.sections()
        if ".symtab" not in secs:
            return {}
        _, symoff, symsize = secs[".symtab"]
        _, stroff, _ = secs[".strtab"]
        out = {}
        entsize = 24 if self.is64 else 16
        for off in range(symoff, symoff + symsize, entsize):
            if self.is64:
                name, _, _, _, value, _ = struct.unpack_from("<IBBHQQ", self.data, off)
            else:
                name, value, _, _, _, _ = struct.unpack_from("<IIIBBH", self.data, off)
            end = self.data.index(b"\0", stroff + name)
            out[self.data[stroff + name:end].decode()] = value
        return out

    def notes_in(self, off, size):
        """(name, type, desc) of the notes in [off, off+size) of the file."""
        out = []
        end = off + size
        while off + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", self.data, off)
            name = self.data[off + 12:off + 12 + namesz].rstrip(b"\0").decode(errors="replace")
            doff = off + 12 + ((namesz + 3) & ~3)
            out.append((name, ntype, self.data[doff:doff + descsz]))
            off = doff + ((descsz + 3) & ~3)
        return out

    def all_notes(self):
        notes = []
        for t, o, _, fs, _ in self.phdrs():
            if t == 4:  # PT_NOTE
                notes += self.notes_in(o, fs)
        for t, o, size in self.sections().values():
            if t == 7:  # SHT_NOTE
                notes += self.notes_in(o, size)
        return notes


def guest_names(suffix):
    return sorted(f[:-len(suffix)] for f in os.listdir(GUESTS) if f.endswith(suffix))


class MultibootImages(unittest.TestCase):
    def test_multiboot_images_carry_no_pvh_note(self):
        names = guest_names(".mb.elf")
        self.assertIn("hello", names)
        for name in names:
            with self.subTest(name=name):
                elf = Elf(read(os.path.join(GUESTS, name + ".mb.elf")))
                self.assertFalse(elf.is64, "Multiboot image must be ELF32")
                xen = [n for n in elf.all_notes() if n[0] == "Xen"]
                self.assertEqual(xen, [])
                self.assertEqual([p for p in elf.phdrs() if p[0] == 4], [], "no PT_NOTE expected")

    def test_multiboot_header_is_valid_and_in_the_first_8k(self):
        # Multiboot 0.6.96 §3.1.1: magic, flags, checksum (sum 0 mod 2^32), 4-byte aligned.
        for name in guest_names(".mb.elf"):
            with self.subTest(name=name):
                data = read(os.path.join(GUESTS, name + ".mb.elf"))[:8192]
                found = [off for off in range(0, len(data) - 11, 4)
                         if struct.unpack_from("<I", data, off)[0] == 0x1BADB002
                         and sum(struct.unpack_from("<III", data, off)) & 0xFFFFFFFF == 0]
                self.assertEqual(len(found), 1, "want exactly one Multiboot header")


class PvhImages(unittest.TestCase):
    def test_pvh_images_carry_the_entry_note(self):
        for name in guest_names(".pvh.elf"):
            with self.subTest(name=name):
                elf = Elf(read(os.path.join(GUESTS, name + ".pvh.elf")))
                self.assertTrue(elf.is64)
                notes = [n for n in elf.all_notes() if n[0] == "Xen" and n[1] == XEN_ELFNOTE_PHYS32_ENTRY]
                self.assertTrue(notes, "no XEN_ELFNOTE_PHYS32_ENTRY note")
                entry, = struct.unpack("<I", notes[0][2][:4])
                self.assertEqual(entry, elf.symbols()["pvh_entry"])


class BzImages(unittest.TestCase):
    def image(self, name):
        path = os.path.join(GUESTS, name + ".bzImage")
        if not os.path.exists(path):
            self.fail(f"{path} was not built")
        return read(path)

    def test_setup_header_fields(self):
        for name in ("hello", "bootinfo"):
            with self.subTest(name=name):
                img = self.image(name)
                elf = Elf(read(os.path.join(GUESTS, name + ".bz64.elf")))
                setup_sects = img[0x1F1]
                kernel = img[(setup_sects + 1) * 512:]
                u16 = lambda off: struct.unpack_from("<H", img, off)[0]
                u32 = lambda off: struct.unpack_from("<I", img, off)[0]
                self.assertNotEqual(setup_sects, 0)
                self.assertEqual(u16(0x1FE), 0xAA55)
                self.assertEqual(img[0x202:0x206], b"HdrS")
                self.assertEqual(u16(0x206), 0x020F)
                self.assertEqual(img[0x200], 0xEB, "jump at 0x200 must be a short jmp")
                self.assertGreaterEqual(0x202 + img[0x201], 0x26C, "header must reach kernel_info_offset")
                self.assertEqual(img[0x211] & 0x01, 0x01, "LOADED_HIGH")
                self.assertEqual(u16(0x236) & 0x01, 0x01, "XLF_KERNEL_64")
                self.assertEqual(img[0x234], 0, "not relocatable")
                self.assertEqual(struct.unpack_from("<Q", img, 0x258)[0], 0x100000)
                self.assertEqual(u32(0x214), 0x100000)
                self.assertGreater(u32(0x238), 0)
                self.assertEqual(u32(0x1F4), (len(kernel) + 15) // 16, "syssize")
                # init_size covers everything the linked kernel occupies, .bss included.
                end = max(v + ms for t, _, v, _, ms in elf.phdrs() if t == 1)
                self.assertGreaterEqual(0x100000 + u32(0x260), end)
                self.assertGreater(u32(0x260), len(kernel))
                # The flat kernel is the ELF's image: entries where boot.rst puts them.
                syms = elf.symbols()
                self.assertEqual(syms["bz_entry32"], 0x100000)
                self.assertEqual(syms["bz_entry64"], 0x100200)
                text = [p for p in elf.phdrs() if p[0] == 1 and p[2] == 0x100000][0]
                elf_bytes = elf.data[text[1]:text[1] + text[3]]
                self.assertEqual(kernel[:len(elf_bytes)], elf_bytes)
                ki = u32(0x268)
                self.assertEqual(kernel[ki:ki + 4], b"LToP", "kernel_info magic at kernel_info_offset")

    def run_mkbzimage(self, elf, flat, setup=None):
        with tempfile.TemporaryDirectory() as d:
            paths = []
            for n, content in (("k.elf", elf), ("k.bin", flat), ("s.bin", setup)):
                p = os.path.join(d, n)
                if content is not None:
                    with open(p, "wb") as f:
                        f.write(content)
                paths.append(p)
            args = [sys.executable, os.path.join(HERE, "mkbzimage.py"), "--elf", paths[0], "--flat", paths[1],
                    "--out", os.path.join(d, "out")]
            if setup is not None:
                args += ["--setup", paths[2]]
            return subprocess.run(args, capture_output=True, text=True)

    def test_mkbzimage_refuses_bad_inputs(self):
        elf = read(os.path.join(GUESTS, "hello.bz64.elf"))
        flat = read(os.path.join(GUESTS, "hello.bz.bin"))
        setup = read(os.path.join(GUESTS, "bz_setup.bin"))
        self.assertEqual(self.run_mkbzimage(elf, flat, setup).returncode, 0)
        cases = {
            "not ELF": (b"MZ" + elf[2:], flat, setup, "not a little-endian ELF64"),
            "linked elsewhere": (self.relinked(elf, 0x200000), flat, setup, "not 0x100000"),
            "flat larger than image": (elf, flat + bytes(1 << 20), setup, "larger than"),
            "setup code over header": (elf, flat, setup[:2] + b"\x90" + setup[3:], "overlaps the header"),
            "setup code without jump": (elf, flat, b"\x90\x90" + setup[2:], "short jmp"),
            "setup code too big": (elf, flat, setup + bytes(4096), "does not fit"),
        }
        for what, (e, f, s, msg) in cases.items():
            with self.subTest(what):
                r = self.run_mkbzimage(e, f, s)
                self.assertNotEqual(r.returncode, 0)
                self.assertIn(msg, r.stderr)

    @staticmethod
    def relinked(elf, addr):
        """The ELF with every PT_LOAD's p_paddr moved by addr - 0x100000."""
        data = bytearray(elf)
        e = Elf(elf)
        for i in range(e.phnum):
            off = e.phoff + i * e.phentsize
            if struct.unpack_from("<I", data, off)[0] == 1:
                paddr, = struct.unpack_from("<Q", data, off + 0x18)
                struct.pack_into("<Q", data, off + 0x18, paddr - 0x100000 + addr)
        return bytes(data)


if __name__ == "__main__":
    if not GUESTS or not os.path.isdir(GUESTS):
        sys.exit("usage: guest_images_test.py GUESTS_DIR")
    unittest.main(argv=sys.argv[:1], verbosity=2)
