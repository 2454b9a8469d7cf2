"""Runs skiff (or QEMU) on a test guest and collects what happened.

Shared by the integration tests: start the VMM with a timeout, feed stdin,
capture the serial console and the log, parse KEY=VALUE lines the guests
print (tests/guests/README.md).
"""
import dataclasses
import os
import re
import subprocess
import time

BUILD_DIR = os.environ.get("SKIFF_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build/main"))
SKIFF = os.environ.get("SKIFF_BIN", os.path.join(BUILD_DIR, "src/cli/skiff"))
GUESTS = os.environ.get("SKIFF_GUESTS_DIR", os.path.join(BUILD_DIR, "tests/guests"))


@dataclasses.dataclass
class Run:
    status: int
    serial: str
    log: str
    seconds: float

    def values(self, key):
        """Every value printed as KEY=VALUE (one per line occurrence)."""
        return re.findall(rf"(?m)^{re.escape(key)}=(.*?)\r?$", self.serial)

    def value(self, key):
        v = self.values(key)
        if not v:
            raise AssertionError(f"guest printed no {key}= line; serial was:\n{self.serial}\nlog:\n{self.log}")
        return v[-1]


def guest(name, fmt="pvh"):
    """pvh: PVH ELF64, mb: Multiboot ELF32, bz: bzImage (64-bit boot protocol)."""
    if fmt == "bz":
        return os.path.join(GUESTS, f"{name}.bzImage")
    return os.path.join(GUESTS, f"{name}.{fmt}.elf")


def run_skiff(args, stdin_data=b"", timeout=60, serial_file=None):
    """Runs skiff with --serial tty (stdin/stdout) unless args say otherwise."""
    cmd = [SKIFF] + list(args)
    if not any(a.startswith("--serial") for a in args):
        cmd += ["--serial", "tty"]
    start = time.monotonic()
    p = subprocess.run(cmd, input=stdin_data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    elapsed = time.monotonic() - start
    serial = p.stdout.decode(errors="replace")
    if serial_file:
        with open(serial_file, errors="replace") as f:
            serial = f.read()
    return Run(p.returncode, serial, p.stderr.decode(errors="replace"), elapsed)
