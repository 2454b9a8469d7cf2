#!/usr/bin/env python3
"""Times VMM launches of a guest that exits at once; prints medians and ratios.

Called by bench/boot/run.sh, which chooses the commands. Runs the commands in
turn (a b a b ...) so that load from other processes on the host falls on all
of them alike, after one untimed warm-up each (page cache, KVM module state).
Each run is measured with os.wait4: wall time (monotonic clock around
fork/exec and wait), user and system CPU time and peak RSS of the VMM
process (ru_maxrss, KiB). A run counts only if the VMM exits with the
expected status, which proves the guest ran: exit_now writes 0 to the
isa-debug-exit port 0xf4, and both VMMs turn that into status (0 << 1) | 1.
QEMU also exits 1 when it fails to start (e.g. "Error while loading elf
kernel"), so for a VMM named with --silent the run must also leave stderr
empty.

  measure.py --runs N --expect-status 1 [--silent NAME]... NAME=COMMAND...
"""

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import threading
import time

# A guest that never reaches its exit port must not hang the benchmark.
RUN_TIMEOUT_S = 60


def measure_once(argv):
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    killer = threading.Timer(RUN_TIMEOUT_S, proc.kill)
    killer.start()
    # wait4 before reading stderr would deadlock on a full pipe; the guest
    # says nothing, so a VMM writing more than a pipe's worth is a failure
    # we want to see anyway: read it all, then reap.
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    killer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stderr.close()
    return {
        "wall": wall,
        "user": usage.ru_utime,
        "sys": usage.ru_stime,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss": usage.ru_maxrss,  # KiB
        "status": proc.returncode,
        "stderr": err.decode(errors="replace").strip(),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--expect-status", type=int, default=1)
    parser.add_argument("--silent", action="append", default=[], metavar="NAME",
                        help="a run of NAME counts only if it writes nothing to stderr")
    parser.add_argument("vmms", nargs="+", metavar="NAME=COMMAND")
    args = parser.parse_args()
    if args.runs < 1:
        sys.exit("measure.py: --runs must be at least 1")

    vmms = []
    for spec in args.vmms:
        name, sep, command = spec.partition("=")
        if not sep or not command:
            sys.exit(f"measure.py: expected NAME=COMMAND, got {spec!r}")
        vmms.append((name, shlex.split(command)))

    for name, argv in vmms:
        print(f"{name}: {shlex.join(argv)}")
    samples = {name: [] for name, _ in vmms}
    for i in range(args.runs + 1):  # run 0 is the warm-up
        for name, argv in vmms:
            m = measure_once(argv)
            if m["status"] != args.expect_status:
                sys.exit(f"measure.py: {name} exited {m['status']}, not {args.expect_status}: the guest "
                         f"did not run to its exit port\n{m['stderr']}")
            if name in args.silent and m["stderr"]:
                sys.exit(f"measure.py: {name} exited {m['status']} but wrote to stderr, so the guest "
                         f"may not have run:\n{m['stderr']}")
            if i:
                samples[name].append(m)

    def median(name, key):
        return statistics.median(s[key] for s in samples[name])

    cols = [("wall ms", "wall", 1000), ("user ms", "user", 1000), ("sys ms", "sys", 1000),
            ("user+sys ms", "cpu", 1000), ("peak RSS MiB", "rss", 1 / 1024)]
    print(f"\nmedians of {args.runs} runs each (alternating), guest exit status {args.expect_status}:")
    header = f"{'':<12}" + "".join(f"{title:>14}" for title, _, _ in cols)
    print(header)
    for name, _ in vmms:
        print(f"{name:<12}" + "".join(f"{median(name, key) * scale:>14.1f}" for _, key, scale in cols))
    if len(vmms) == 2:
        (a, _), (b, _) = vmms
        ratios = []
        for _, key, _ in cols:
            denom = median(b, key)
            ratios.append(f"{median(a, key) / denom:>14.2f}" if denom > 0 else f"{'n/a':>14}")
        print(f"{a + '/' + b:<12}" + "".join(ratios))


if __name__ == "__main__":
    main()
