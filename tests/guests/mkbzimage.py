#!/usr/bin/env python3
"""Builds <name>.bzImage: the setup sectors (boot sector + setup header,
Linux boot protocol 2.15, boot.rst "The Real-Mode Kernel Header") followed
by the guest's protected-mode kernel as a flat binary.

  mkbzimage.py --elf guest.bz64.elf --flat guest.bz.bin [--setup setup.bin] --out guest.bzImage

--elf is the linked kernel (for its load address and the memory it needs,
.bss included: init_size); --flat is `objcopy -O binary` of it; --setup is
the optional real-mode code (bz_setup.S, linked at setup offset 0x200, its
first two bytes a short jump over the header) that BIOS loaders such as
QEMU's -kernel enter.
"""
import argparse
import struct
import sys

SECTOR = 512
LOAD_ADDR = 0x100000          # pref_address; the kernel is not relocatable
SETUP_SECTS = 2               # 0 would mean 4 to the loader (boot.rst)
HEADER_END = 0x270            # end of the 2.15 header (kernel_info_offset + 4)
KERNEL_INFO_OFFSET = 0x100    # guest_bz.ld puts kernel_info there

LOADED_HIGH = 0x01
XLF_KERNEL_64 = 0x01


def load_extent(elf):
    """(lowest p_paddr, highest p_paddr + p_memsz) over the ELF64 PT_LOADs."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        raise SystemExit("mkbzimage: --elf is not a little-endian ELF64 file")
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    lo, hi = None, 0
    for i in range(phnum):
        p_type, _, _, _, p_paddr, _, p_memsz, _ = struct.unpack_from("<IIQQQQQQ", elf, phoff + i * phentsize)
        if p_type != 1 or p_memsz == 0:
            continue
        lo = p_paddr if lo is None else min(lo, p_paddr)
        hi = max(hi, p_paddr + p_memsz)
    if lo is None:
        raise SystemExit("mkbzimage: --elf has no PT_LOAD segment")
    return lo, hi


def build(elf, flat, setup_code):
    lo, hi = load_extent(elf)
    if lo != LOAD_ADDR:
        raise SystemExit(f"mkbzimage: kernel is linked at {lo:#x}, not {LOAD_ADDR:#x}")
    if len(flat) > hi - lo:
        raise SystemExit(f"mkbzimage: flat image ({len(flat)} bytes) is larger than the ELF's extent")
    init_size = (hi - lo + 0xfff) & ~0xfff

    setup = bytearray(SECTOR * (1 + SETUP_SECTS))
    # The real-mode code is linked to run from setup offset 0x200 and starts
    # with the 2-byte jump; the header lies over its bytes 2..HEADER_END-0x200.
    if setup_code:
        if len(setup_code) > len(setup) - 0x200:
            raise SystemExit(f"mkbzimage: setup code ({len(setup_code)} bytes) does not fit")
        if any(setup_code[2:HEADER_END - 0x200]):
            raise SystemExit("mkbzimage: setup code overlaps the header (it must jump over it)")
        setup[0x200:0x200 + len(setup_code)] = setup_code
        jump = bytes(setup_code[:2])
        if jump[0] != 0xEB or 0x202 + jump[1] < HEADER_END:
            raise SystemExit("mkbzimage: setup code must start with a short jmp past the header")
    else:
        # No real-mode code: the jump still encodes the header's length
        # (boot.rst: the header ends at 0x202 + the byte at 0x201) and lands
        # on a hlt loop, for a BIOS loader that enters it anyway.
        jump = bytes([0xEB, HEADER_END - 0x202])
        setup[HEADER_END:HEADER_END + 3] = b"\xf4\xeb\xfd"  # hlt; jmp .-1

    def put(fmt, off, *v):
        struct.pack_into("<" + fmt, setup, off, *v)

    put("B", 0x1F1, SETUP_SECTS)                   # setup_sects
    put("I", 0x1F4, (len(flat) + 15) // 16)        # syssize, 16-byte units
    put("H", 0x1FA, 0xFFFF)                        # vid_mode: "normal"
    put("H", 0x1FE, 0xAA55)                        # boot_flag
    setup[0x200:0x202] = jump                      # jump
    setup[0x202:0x206] = b"HdrS"                   # header
    put("H", 0x206, 0x020F)                        # version 2.15
    put("B", 0x211, LOADED_HIGH)                   # loadflags
    put("I", 0x214, LOAD_ADDR)                     # code32_start
    put("I", 0x22C, 0x3FFFFFFF)                    # initrd_addr_max: the runtime maps 1 GiB
    put("I", 0x230, 0x100000)                      # kernel_alignment (not relocatable)
    put("B", 0x234, 0)                             # relocatable_kernel
    put("B", 0x235, 20)                            # min_alignment: 1 MiB
    put("H", 0x236, XLF_KERNEL_64)                 # xloadflags: 64-bit entry at +0x200
    put("I", 0x238, 4095)                          # cmdline_size (without the NUL)
    put("Q", 0x258, LOAD_ADDR)                     # pref_address
    put("I", 0x260, init_size)                     # init_size: image + .bss
    put("I", 0x268, KERNEL_INFO_OFFSET)            # kernel_info_offset
    return bytes(setup) + flat


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--elf", required=True)
    ap.add_argument("--flat", required=True)
    ap.add_argument("--setup")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    with open(a.elf, "rb") as f:
        elf = f.read()
    with open(a.flat, "rb") as f:
        flat = f.read()
    setup_code = b""
    if a.setup:
        with open(a.setup, "rb") as f:
            setup_code = f.read()
    image = build(elf, flat, setup_code)
    with open(a.out, "wb") as f:
        f.write(image)
    return 0


if __name__ == "__main__":
    sys.exit(main())
