#!/usr/bin/env python3
"""Boots skiff's default Linux guest under QEMU TCG and reports what it did.

This is the stock-Linux-driver harness (DESIGN.md, test pyramid level 3):
Debian's cloud kernel and its own virtio drivers are the independent client
of whatever device the extra QEMU arguments attach (later: skiff's devices
through skiff-vhost and vhost-user). Standard library only.

The guest comes from scripts/build-guest (.cache/guest/). A test script is
put at /tests/run.sh in a second cpio archive appended to the initramfs (the
kernel unpacks concatenated archives; QEMU's -initrd takes one file, so the
two are concatenated into the work dir) and run by /init via
skiff.run=/tests/run.sh. The script reports with one line
    SKIFF-TEST-RESULT: pass|fail <details>
and the guest then powers off.

  run_qemu_tcg.py [--script FILE] [--smp N] [--memory 512M] [--timeout S]
                  [--workdir DIR] [--append ARGS] [-- QEMU ARGS...]

Exit status: 0 pass, 1 fail, 2 timeout or harness error, 77 skipped (no
QEMU or no guest; the reason is printed as "skipped: <reason>").
A JSON summary goes to stdout; the full serial log to <workdir>/serial.log.
"""

import argparse
import dataclasses
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "scripts", "lib"))
import cpio_newc  # noqa: E402  (path set just above)

# SKIFF_GUEST_DIR: another build of the guest (default: scripts/build-guest's).
GUEST_DIR = os.environ.get("SKIFF_GUEST_DIR", os.path.join(REPO, ".cache", "guest"))
QEMU = "qemu-system-x86_64"
EXIT_SKIP = 77

BANNER_RE = re.compile(r"skiff-guest: booted (\S+), (\d+) cpus, (\d+) MiB")
RESULT_RE = re.compile(r"SKIFF-TEST-RESULT: (pass|fail)\b ?(.*)")
POWEROFF_LINE = "skiff-guest: powering off"
# Lines that mean the guest is gone for good; no point waiting for a timeout.
FATAL_RE = re.compile(r"Kernel panic|end Kernel panic|Attempted to kill init")


@dataclasses.dataclass
class Result:
    status: str  # "pass", "fail", "timeout", "error", "skipped"
    reason: str  # why, in words a test failure message can show
    qemu_exit: int | None = None
    release: str | None = None  # from the banner
    cpus: int | None = None
    mem_mib: int | None = None
    boot_seconds: float | None = None  # QEMU start to banner, wall clock
    total_seconds: float | None = None
    result_line: str | None = None  # "pass ..."/"fail ..." as the guest said
    details: str = ""  # text after pass|fail
    powered_off: bool = False
    log: str = ""  # path of the full serial log

    def exit_code(self):
        return {"pass": 0, "fail": 1, "skipped": EXIT_SKIP}.get(self.status, 2)


def skip_reason(kernel, initrd):
    """Why this host cannot run the harness, or None."""
    if shutil.which(QEMU) is None:
        return f"{QEMU} not found (run scripts/setup)"
    for path in (kernel, initrd):
        if not os.path.isfile(path):
            return f"{path} missing (run scripts/build-guest)"
    return None


def make_initrd(base_initrd, workdir, script=None, files=()):
    """The default initramfs, plus /tests/run.sh (and files) when given."""
    if script is None and not files:
        return base_initrd
    extra = cpio_newc.Archive()
    extra.dir("/tests")
    if script is not None:
        extra.file_from("/tests/run.sh", script, 0o755)
    for f in files:
        extra.file_from(f"/tests/{os.path.basename(f)}", f)
    second = os.path.join(workdir, "tests.cpio.gz")
    extra.write_gz(second)
    combined = os.path.join(workdir, "initramfs+tests.cpio.gz")
    with open(combined, "wb") as out:
        for part in (base_initrd, second):
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out)
    return combined


def run(
    *,
    workdir,
    script=None,
    files=(),
    smp=1,
    memory="512M",
    timeout=120.0,
    append="",
    qemu_args=(),
    kernel=None,
    initrd=None,
):
    """Boots the guest once; returns a Result. Never raises for guest trouble."""
    kernel = kernel or os.path.join(GUEST_DIR, "vmlinuz")
    initrd = initrd or os.path.join(GUEST_DIR, "initramfs.cpio.gz")
    os.makedirs(workdir, exist_ok=True)
    log_path = os.path.join(workdir, "serial.log")
    reason = skip_reason(kernel, initrd)
    if reason:
        return Result("skipped", reason, log=log_path)

    initrd = make_initrd(initrd, workdir, script, files)
    cmdline = "console=ttyS0 panic=-1"
    if script is not None:
        cmdline += " skiff.run=/tests/run.sh"
    if append:
        cmdline += " " + append
    cmd = [QEMU, "-accel", "tcg", "-m", memory, "-smp", str(smp), "-nographic", "-monitor", "none",
           "-serial", "stdio", "-no-reboot", "-kernel", kernel, "-initrd", initrd,
           "-append", cmdline, *qemu_args]
    with open(os.path.join(workdir, "qemu-command"), "w") as f:
        f.write(" ".join(cmd) + "\n")
    return _watch(cmd, log_path, timeout, expect_result=script is not None)


def _watch(cmd, log_path, timeout, expect_result):
    res = Result("error", "", log=log_path)
    start = time.monotonic()
    deadline = start + timeout
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        pending = b""
        timed_out = fatal = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            if not sel.select(min(left, 1.0)):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break  # QEMU closed its output: it is exiting
            log.write(chunk)
            log.flush()
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace").rstrip("\r")
                fatal |= _note_line(res, line, time.monotonic() - start)
            if fatal:
                break
        if timed_out or fatal:
            os.killpg(proc.pid, signal.SIGKILL)
        try:
            res.qemu_exit = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            res.qemu_exit = proc.wait()
        sel.close()
        proc.stdout.close()
    if pending:
        _note_line(res, pending.decode(errors="replace").rstrip("\r"), time.monotonic() - start)
    res.total_seconds = round(time.monotonic() - start, 3)
    res.status, res.reason = _verdict(res, timed_out, fatal, expect_result, timeout)
    return res


def _note_line(res, line, elapsed):
    """Records what a serial line tells; True when the guest is dead."""
    m = BANNER_RE.search(line)
    if m and res.release is None:
        res.release, res.cpus, res.mem_mib = m.group(1), int(m.group(2)), int(m.group(3))
        res.boot_seconds = round(elapsed, 3)
    m = RESULT_RE.search(line)
    if m and res.result_line is None:
        res.result_line = f"{m.group(1)} {m.group(2)}".strip()
        res.details = m.group(2)
    if POWEROFF_LINE in line:
        res.powered_off = True
    return bool(FATAL_RE.search(line))


def _verdict(res, timed_out, fatal, expect_result, timeout):
    if fatal:
        return "fail", "the guest kernel panicked (see the serial log)"
    if timed_out:
        seen = "no banner" if res.release is None else "banner seen"
        return "timeout", f"no end after {timeout:.0f} s ({seen})"
    if res.release is None:
        return "fail", f"QEMU exited {res.qemu_exit} without the guest banner"
    if expect_result:
        if res.result_line is None:
            return "fail", "the guest script printed no SKIFF-TEST-RESULT line"
        if not res.result_line.startswith("pass"):
            return "fail", f"the guest script reported: {res.result_line}"
    if not res.powered_off or res.qemu_exit != 0:
        return "fail", f"no clean power-off (QEMU exit {res.qemu_exit})"
    return "pass", res.result_line or "booted and powered off"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--script", help="shell script to run in the guest as /tests/run.sh")
    parser.add_argument("--file", action="append", default=[], help="extra file for /tests (repeatable)")
    parser.add_argument("--smp", type=int, default=1)
    parser.add_argument("--memory", default="512M")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds (default 120)")
    parser.add_argument("--append", default="", help="more kernel command line")
    parser.add_argument("--workdir", default=os.path.join(REPO, "build", "linux-harness"))
    parser.add_argument("--kernel")
    parser.add_argument("--initrd")
    parser.add_argument("qemu_args", nargs="*", help="after --: passed to QEMU unchanged")
    args = parser.parse_args()
    res = run(workdir=args.workdir, script=args.script, files=args.file, smp=args.smp,
              memory=args.memory, timeout=args.timeout, append=args.append,
              qemu_args=args.qemu_args, kernel=args.kernel, initrd=args.initrd)
    if res.status == "skipped":
        print(f"skipped: {res.reason}")
    print(json.dumps(dataclasses.asdict(res), indent=2))
    sys.exit(res.exit_code())


if __name__ == "__main__":
    main()
