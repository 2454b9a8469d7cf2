#!/usr/bin/env python3
"""Writes gzip-compressed "newc" cpio archives for the Linux initramfs.

Why not GNU cpio over a staging directory: an initramfs needs /dev/console
(a character device, which only root can mknod) and files owned by root, and
it should be byte-for-byte reproducible. Writing the archive ourselves gives
all three without privileges. Format: Linux
Documentation/driver-api/early-userspace/buffer-format.rst ("newc": magic
070701, 13 eight-digit hex fields, name padded to 4 bytes, data padded to 4).

The kernel unpacks several archives placed back to back (each one may be
compressed on its own), so a test adds its files by appending a second
archive to the default guest's initramfs; see tests/linux/run_qemu_tcg.py.

Use as a module (Archive) or from the shell, with a spec on stdin in the
style of the kernel's usr/gen_init_cpio:
    dir   <path> <mode>
    file  <path> <source-file> <mode>
    slink <path> <target> <mode>
    nod   <path> <mode> c|b <major> <minor>
    tree  <path> <source-dir>        (all of source-dir under <path>)
  python3 cpio_newc.py -o out.cpio.gz < spec
"""

import argparse
import gzip
import os
import stat
import sys

_TRAILER = "TRAILER!!!"


class Archive:
    """Collects entries in order; parents must be added before children."""

    def __init__(self):
        self._chunks = []
        self._ino = 300000  # distinct from anything a later archive may use
        self._paths = set()

    def _add(self, path, mode, data=b"", rdev=(0, 0)):
        name = path.lstrip("/")
        if not name or name.startswith("..") or "/../" in f"/{name}/":
            raise ValueError(f"cpio: refusing unsafe path {path!r}")
        if name in self._paths:
            raise ValueError(f"cpio: duplicate path {path!r}")
        self._paths.add(name)
        self._ino += 1
        self._chunks.append(_header(name, mode, self._ino, data, rdev))

    def dir(self, path, mode=0o755):
        self._add(path, stat.S_IFDIR | mode)

    def file(self, path, data, mode=0o644):
        self._add(path, stat.S_IFREG | mode, data)

    def file_from(self, path, source, mode=None):
        with open(source, "rb") as f:
            data = f.read()
        if mode is None:
            mode = 0o755 if os.access(source, os.X_OK) else 0o644
        self.file(path, data, mode)

    def symlink(self, path, target, mode=0o777):
        self._add(path, stat.S_IFLNK | mode, target.encode())

    def node(self, path, mode, kind, major, minor):
        fmt = {"c": stat.S_IFCHR, "b": stat.S_IFBLK}[kind]
        self._add(path, fmt | mode, rdev=(major, minor))

    def tree(self, path, source):
        """Adds source's contents below path (path itself must exist already).

        Symlinks are kept as links; other special files are refused because a
        test tree has no business containing them."""
        base = path.rstrip("/")
        for root, dirs, files in os.walk(source):
            dirs.sort()
            rel = os.path.relpath(root, source)
            dest = base if rel == "." else f"{base}/{rel}"
            for d in dirs:
                full = os.path.join(root, d)
                if os.path.islink(full):
                    self.symlink(f"{dest}/{d}", os.readlink(full))
                else:
                    self.dir(f"{dest}/{d}", stat.S_IMODE(os.stat(full).st_mode))
            for name in sorted(files):
                full = os.path.join(root, name)
                st = os.lstat(full)
                if stat.S_ISLNK(st.st_mode):
                    self.symlink(f"{dest}/{name}", os.readlink(full))
                elif stat.S_ISREG(st.st_mode):
                    self.file_from(f"{dest}/{name}", full, stat.S_IMODE(st.st_mode))
                else:
                    raise ValueError(f"cpio: {full} is neither a file, a directory nor a symlink")

    def bytes(self):
        """The uncompressed archive, trailer included."""
        return b"".join(self._chunks) + _header(_TRAILER, 0, 0, b"", (0, 0))

    def write_gz(self, out_path):
        # No name, mtime=0: the same inputs give the same bytes (build-guest's stamp
        # logic and anyone diffing two builds rely on that).
        tmp = out_path + ".tmp"
        with open(tmp, "wb") as raw:
            with gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=6, mtime=0) as gz:
                gz.write(self.bytes())
        os.replace(tmp, out_path)


def _header(name, mode, ino, data, rdev):
    nlink = 2 if stat.S_ISDIR(mode) else 1
    encoded = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0]
    head = b"070701" + b"".join(b"%08X" % v for v in fields) + encoded
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)


def _apply_spec(archive, lines):
    for lineno, line in enumerate(lines, 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        kind, args = words[0], words[1:]
        try:
            if kind == "dir":
                archive.dir(args[0], int(args[1], 8))
            elif kind == "file":
                archive.file_from(args[0], args[1], int(args[2], 8))
            elif kind == "slink":
                archive.symlink(args[0], args[1], int(args[2], 8))
            elif kind == "nod":
                archive.node(args[0], int(args[1], 8), args[2], int(args[3]), int(args[4]))
            elif kind == "tree":
                archive.tree(args[0], args[1])
            else:
                raise ValueError(f"unknown entry kind {kind!r}")
        except (IndexError, ValueError, OSError) as e:
            raise SystemExit(f"cpio_newc: spec line {lineno} ({line.strip()!r}): {e}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", required=True, help="gzip-compressed archive to write")
    args = parser.parse_args()
    archive = Archive()
    _apply_spec(archive, sys.stdin)
    archive.write_gz(args.output)


if __name__ == "__main__":
    main()
