#!/usr/bin/env python3
"""CTest cases (label "linux") for the default guest and the QEMU-TCG harness.

  test_guest.py <case> --workdir DIR

Each case boots the guest under QEMU TCG through run_qemu_tcg.run() and
checks what the guest printed against what the host asked for. Exit status:
0 pass, 1 fail, 77 skipped (printed as "skipped: <reason>"; CTest maps it
with SKIP_RETURN_CODE).
"""

import argparse
import os
import secrets
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run_qemu_tcg as harness  # noqa: E402

MEMORY_MIB = 512
# The banner reports MemTotal: RAM minus what firmware and the kernel image
# keep. The Debian cloud kernel keeps ~45 MiB of 512; more than 25% missing
# would mean the -m size did not arrive.
MEMORY_FLOOR_MIB = MEMORY_MIB * 3 // 4


class Failed(Exception):
    pass


class Skipped(Exception):
    pass


def boot(workdir, **kwargs):
    res = harness.run(workdir=workdir, **kwargs)
    if res.status == "skipped":
        raise Skipped(res.reason)
    print(f"{res.status}: {res.reason}; banner after {res.boot_seconds} s; log {res.log}")
    return res


def check(cond, what, res):
    if not cond:
        raise Failed(f"{what} (status {res.status}: {res.reason}; log {res.log})")


def check_banner(res, smp):
    check(res.release is not None, "no skiff-guest banner", res)
    with open(os.path.join(harness.GUEST_DIR, "release")) as f:
        release = f.read().strip()
    check(res.release == release, f"banner release {res.release}, built {release}", res)
    check(res.cpus == smp, f"banner says {res.cpus} cpus, QEMU was given -smp {smp}", res)
    check(MEMORY_FLOOR_MIB <= res.mem_mib <= MEMORY_MIB,
          f"banner says {res.mem_mib} MiB, QEMU was given {MEMORY_MIB} MiB", res)


def boots_default_guest_with_banner_and_powers_off(workdir):
    res = boot(workdir, smp=2, memory=f"{MEMORY_MIB}M")
    check_banner(res, 2)
    check(res.powered_off, "the guest did not say it powers off", res)
    check(res.qemu_exit == 0, f"QEMU exited {res.qemu_exit}, want 0 after poweroff", res)
    check(res.status == "pass", "harness verdict", res)


def runs_in_guest_script_with_virtio_modules_loaded(workdir):
    script = os.path.join(HERE, "guest", "report_cpus_and_modules.sh")
    # The rng device also checks that extra QEMU arguments reach QEMU and
    # that Linux's virtio_rng driver binds through virtio_pci.
    res = boot(workdir, smp=2, memory=f"{MEMORY_MIB}M", script=script,
               qemu_args=["-device", "virtio-rng-pci"])
    check_banner(res, 2)
    check(res.result_line is not None, "the guest script printed no result", res)
    check(res.status == "pass", "the guest script did not pass", res)
    fields = dict(kv.split("=", 1) for kv in res.details.split() if "=" in kv)
    check(fields.get("cpus") == "2", f"guest script counted cpus={fields.get('cpus')}, want 2", res)
    check(fields.get("rng_bound") == "yes", "virtio_rng did not bind the virtio-rng-pci device", res)
    modules = set(fields.get("modules", "").split(","))
    for m in ("virtio_blk", "virtio_net", "virtio_console", "virtio_rng", "virtio_balloon",
              "vmw_vsock_virtio_transport"):
        check(m in modules, f"{m} not in lsmod {sorted(modules)}", res)


def runs_script_from_virtio_disk(workdir):
    # skiff.run=/dev/vda: the script is the disk's contents, NUL-padded. The
    # token proves the line came from this disk, not from some earlier run.
    os.makedirs(workdir, exist_ok=True)
    token = secrets.token_hex(8)
    body = f'#!/bin/sh\necho "SKIFF-TEST-RESULT: pass token={token} disk=$(cat /sys/block/vda/size)"\n'
    disk = os.path.join(workdir, "script-disk.raw")
    with open(disk, "wb") as f:
        f.write(body.encode().ljust(64 * 1024, b"\0"))
    res = boot(workdir, append="skiff.run=/dev/vda",
               qemu_args=["-drive", f"file={disk},if=none,format=raw,id=d0",
                          "-device", "virtio-blk-pci,drive=d0"])
    check(res.status == "pass", "the script on the virtio disk did not pass", res)
    check(f"token={token}" in res.details, f"wrong token in {res.result_line!r}", res)
    check("disk=128" in res.details, f"virtio_blk saw the wrong size: {res.result_line!r}", res)


def reports_failing_silent_or_slow_script_as_failure(workdir):
    os.makedirs(workdir, exist_ok=True)
    failing = os.path.join(workdir, "failing.sh")
    with open(failing, "w") as f:
        f.write('echo "SKIFF-TEST-RESULT: fail deliberately"\n')
    res = boot(os.path.join(workdir, "failing"), script=failing)
    check(res.status == "fail", "a script reporting fail was not a failure", res)
    check(res.details == "deliberately", f"details {res.details!r}", res)

    silent = os.path.join(workdir, "silent.sh")
    with open(silent, "w") as f:
        f.write("echo no result line here\n")
    res = boot(os.path.join(workdir, "silent"), script=silent)
    # "fail", not "timeout": the guest powers off after the script, and the
    # harness must notice that instead of waiting for its timeout.
    check(res.status == "fail", "a script without a result line was not a failure", res)
    check("no SKIFF-TEST-RESULT" in res.reason, f"reason {res.reason!r}", res)

    # A guest that does not finish in time is killed and reported as such.
    res = boot(os.path.join(workdir, "slow"), script=silent, timeout=1)
    check(res.status == "timeout", "a run past its timeout was not reported as a timeout", res)
    check(res.qemu_exit is not None and res.qemu_exit < 0, f"QEMU not killed: {res.qemu_exit}", res)


CASES = {f.__name__: f for f in (
    boots_default_guest_with_banner_and_powers_off,
    runs_in_guest_script_with_virtio_modules_loaded,
    runs_script_from_virtio_disk,
    reports_failing_silent_or_slow_script_as_failure,
)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("--workdir", required=True)
    args = parser.parse_args()
    try:
        CASES[args.case](os.path.join(args.workdir, args.case))
    except Skipped as e:
        print(f"skipped: {e}")
        sys.exit(harness.EXIT_SKIP)
    except Failed as e:
        print(f"FAILED {args.case}: {e}")
        sys.exit(1)
    print(f"passed {args.case}")


if __name__ == "__main__":
    main()
