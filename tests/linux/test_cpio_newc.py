#!/usr/bin/env python3
"""Unit tests for scripts/lib/cpio_newc.py, checked against GNU cpio."""

import gzip
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "lib"))
import cpio_newc  # noqa: E402


def gnu_cpio_listing(archive_gz):
    """`cpio -itv` output lines of a gzip-compressed archive."""
    with open(archive_gz, "rb") as f:
        raw = gzip.decompress(f.read())
    out = subprocess.run(["cpio", "-itv", "--quiet"], input=raw, capture_output=True, check=True)
    return out.stdout.decode().splitlines()


@unittest.skipIf(shutil.which("cpio") is None, "GNU cpio not installed (run scripts/setup)")
class CpioNewcTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="cpio_newc_test")
        self.addCleanup(shutil.rmtree, self.tmp)

    def test_gnu_cpio_reads_every_entry_kind_with_its_mode_and_owner(self):
        a = cpio_newc.Archive()
        a.dir("/bin", 0o755)
        a.file("/bin/hello", b"odd length!", 0o750)  # 11 bytes: exercises padding
        a.symlink("/bin/sh", "/bin/hello")
        a.dir("/dev")
        a.node("/dev/console", 0o600, "c", 5, 1)
        a.node("/dev/vda", 0o660, "b", 254, 0)
        out = os.path.join(self.tmp, "a.cpio.gz")
        a.write_gz(out)
        listing = gnu_cpio_listing(out)
        self.assertEqual(len(listing), 6, listing)
        by_name = {line.split()[-1] if "->" not in line else line.split()[-3]: line for line in listing}
        self.assertTrue(by_name["bin"].startswith("drwxr-xr-x"), by_name["bin"])
        self.assertRegex(by_name["bin/hello"], r"^-rwxr-x---\s+1 root\s+root\s+11 ")
        self.assertIn("bin/sh -> /bin/hello", by_name["bin/sh"])
        self.assertRegex(by_name["dev/console"], r"^crw-------.* 5,\s+1 ")
        self.assertRegex(by_name["dev/vda"], r"^brw-rw----.* 254,\s+0 ")

    def test_file_contents_survive_extraction(self):
        src = os.path.join(self.tmp, "src")
        os.makedirs(os.path.join(src, "sub"))
        payload = os.urandom(1001)
        with open(os.path.join(src, "sub", "blob"), "wb") as f:
            f.write(payload)
        a = cpio_newc.Archive()
        a.dir("/t")
        a.tree("/t", src)
        out = os.path.join(self.tmp, "b.cpio.gz")
        a.write_gz(out)
        dest = os.path.join(self.tmp, "x")
        os.makedirs(dest)
        with open(out, "rb") as f:
            subprocess.run(["cpio", "-id", "--quiet"], input=gzip.decompress(f.read()), cwd=dest, check=True)
        with open(os.path.join(dest, "t", "sub", "blob"), "rb") as f:
            self.assertEqual(f.read(), payload)

    def test_same_inputs_give_identical_bytes(self):
        outs = []
        for name in ("1", "2"):
            a = cpio_newc.Archive()
            a.file("/f", b"x")
            outs.append(os.path.join(self.tmp, name))
            a.write_gz(outs[-1])
        with open(outs[0], "rb") as f1, open(outs[1], "rb") as f2:
            self.assertEqual(f1.read(), f2.read())

    def test_rejects_paths_escaping_the_root_and_duplicates(self):
        a = cpio_newc.Archive()
        for bad in ("../etc/passwd", "/a/../../b", "/", ""):
            with self.assertRaises(ValueError, msg=bad):
                a.file(bad, b"")
        a.file("/once", b"")
        with self.assertRaises(ValueError):
            a.file("/once", b"")

    def test_tree_refuses_special_files(self):
        src = os.path.join(self.tmp, "special")
        os.makedirs(src)
        os.mkfifo(os.path.join(src, "fifo"))
        a = cpio_newc.Archive()
        a.dir("/t")
        with self.assertRaises(ValueError):
            a.tree("/t", src)


if __name__ == "__main__":
    unittest.main()
