#!/usr/bin/env python3
"""Runs vhost_net_tests inside the TCG guest, whose kernel has vhost-net (CTest label "linux").

  run_vhost_net_in_guest.py --binary PATH/vhost_net_tests --workdir DIR

Hosts without /dev/vhost-net (this development VM) cannot run the
VhostNetDevice tests against the kernel; Debian's guest kernel that
tests/linux boots under QEMU TCG has the modules. This harness puts the
test binary (debug info stripped), every shared library `ldd` lists, the
dynamic loader, and the guest kernel's vhost_net.ko with its dependencies
(ordered from modules.dep) into a second initramfs archive, with a run.sh
that insmods them, runs the binary through the loader and reports
SKIFF-TEST-RESULT. In the guest every test must pass: a skip (no
/dev/vhost-net after loading the module) is a failure here.

Exit status: 0 pass, 1 fail, 2 harness error, 77 skipped ("skipped: <reason>":
no QEMU, no guest, or the guest kernel has no vhost_net module).
"""

import argparse
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "linux"))
import run_qemu_tcg as harness  # noqa: E402

TIMEOUT = 180.0


def module_order(moddir, name):
    """vhost_net.ko and what it needs, dependencies first (from modules.dep)."""
    deps = {}
    with open(os.path.join(moddir, "modules.dep")) as f:
        for line in f:
            mod, _, rest = line.partition(":")
            deps[mod] = rest.split()
    wanted = next((m for m in deps if os.path.basename(m) in (f"{name}.ko", f"{name}.ko.xz")), None)
    if wanted is None:
        return None
    order = []

    def visit(m):
        if m in order:
            return
        for d in deps.get(m, []):
            visit(d)
        order.append(m)

    visit(wanted)
    return [os.path.join(moddir, m) for m in order]


def shared_libraries(binary):
    """The loader and every library the binary needs, as host paths."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    libs = []
    for line in out.splitlines():
        m = re.search(r"=>\s+(/\S+)", line) or re.match(r"\s*(/\S+)", line)
        if m:
            libs.append(m.group(1))
    return libs


RUN_SH = """#!/bin/sh
for m in {modules}; do
  insmod /tests/$m || {{ echo "SKIFF-TEST-RESULT: fail insmod $m failed"; exit 0; }}
done
ls -l /dev/vhost-net /dev/net/tun
/tests/{loader} --library-path /tests /tests/vhost_net_tests >/tmp/gtest.out 2>&1
rc=$?
cat /tmp/gtest.out
passed=$(grep -c '^\\[       OK \\]' /tmp/gtest.out)
skipped=$(grep -c '^\\[  SKIPPED \\]' /tmp/gtest.out)
if [ "$rc" = 0 ] && [ "$skipped" = 0 ] && [ "$passed" -gt 0 ]; then
  echo "SKIFF-TEST-RESULT: pass $passed tests passed against the guest kernel's vhost-net"
else
  echo "SKIFF-TEST-RESULT: fail exit $rc, $passed passed, $skipped skipped (a skip is a failure here)"
fi
"""


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", required=True)
    p.add_argument("--workdir", required=True)
    args = p.parse_args()

    kernel = os.path.join(harness.GUEST_DIR, "vmlinuz")
    initrd = os.path.join(harness.GUEST_DIR, "initramfs.cpio.gz")
    reason = harness.skip_reason(kernel, initrd)
    moddirs = sorted(os.listdir(os.path.join(harness.GUEST_DIR, "kernel", "lib", "modules"))) \
        if os.path.isdir(os.path.join(harness.GUEST_DIR, "kernel", "lib", "modules")) else []
    if reason is None and not moddirs:
        reason = f"{harness.GUEST_DIR}/kernel/lib/modules missing (run scripts/build-guest)"
    modules = None
    if reason is None:
        moddir = os.path.join(harness.GUEST_DIR, "kernel", "lib", "modules", moddirs[-1])
        modules = module_order(moddir, "vhost_net")
        if modules is None:
            reason = f"the guest kernel ({moddirs[-1]}) has no vhost_net module"
        elif any(m.endswith(".xz") for m in modules):
            reason = "the guest kernel's modules are compressed; busybox insmod takes plain .ko"
    if reason:
        print(f"skipped: {reason}")
        return harness.EXIT_SKIP

    os.makedirs(args.workdir, exist_ok=True)
    staged = os.path.join(args.workdir, "files")
    shutil.rmtree(staged, ignore_errors=True)
    os.makedirs(staged)
    binary = os.path.join(staged, "vhost_net_tests")
    # Debug info is most of the binary; the guest needs none of it.
    subprocess.run(["objcopy", "--strip-debug", args.binary, binary], check=True)
    files = [binary]
    libs = shared_libraries(args.binary)
    loader = None
    for lib in libs:
        dest = os.path.join(staged, os.path.basename(lib))
        shutil.copyfile(lib, dest)
        os.chmod(dest, 0o755)
        files.append(dest)
        if "ld-linux" in os.path.basename(lib):
            loader = os.path.basename(lib)
    if loader is None:
        print("error: ldd named no dynamic loader")
        return 2
    files += modules
    script = os.path.join(args.workdir, "run.sh")
    with open(script, "w") as f:
        f.write(RUN_SH.format(modules=" ".join(os.path.basename(m) for m in modules), loader=loader))

    res = harness.run(workdir=args.workdir, script=script, files=files, smp=2, memory="512M",
                      timeout=TIMEOUT, qemu_args=["-cpu", "max"])
    # The test binary's output, from gtest's first line to the verdict.
    with open(res.log, errors="replace") as f:
        shown = False
        for line in f:
            shown |= line.startswith("[==========]")
            if shown:
                print(line.rstrip())
            if "SKIFF-TEST-RESULT" in line:
                break
    print(f"{res.status}: {res.reason} ({res.total_seconds} s; serial log {res.log})")
    return res.exit_code()


if __name__ == "__main__":
    sys.exit(main())
