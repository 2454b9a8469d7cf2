#!/usr/bin/env python3
"""Times VMM launches of a guest that exits at once; prints medians and ratios.

Called by bench/boot/run.sh, which chooses the commands. Runs the commands in
turn (a b a b ...) so that load from other processes on the host falls on all
of them alike, after one untimed warm-up each (page cache, KVM module state).
Each run is measured through rusage_exec (--launcher): wall time (monotonic
clock around the launch and wait, so it includes rusage_exec's own fork and
exec, well under a millisecond), user and system CPU time and peak RSS of
the VMM process (ru_maxrss, KiB) as rusage_exec's wait4 reports them. A run counts only if the VMM exits with the
expected status, which proves the guest ran: exit_now writes 0 to the
isa-debug-exit port 0xf4, and both VMMs turn that into status (0 << 1) | 1.
QEMU also exits 1 when it fails to start (e.g. "Error while loading elf
kernel"), so for a VMM named with --silent the run must also leave stderr
empty.

  measure.py --launcher RUSAGE_EXEC --runs N --expect-status 1 [--silent NAME]... NAME=COMMAND...
"""

import argparse
import os
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time

# A guest that never reaches its exit port must not hang the benchmark.
RUN_TIMEOUT_S = 60
# (title, key, scale from the sample's unit: seconds, KiB)
COLS = [("wall ms", "wall", 1000), ("user ms", "user", 1000), ("sys ms", "sys", 1000),
        ("user+sys ms", "cpu", 1000), ("peak RSS MiB", "rss", 1 / 1024)]


def measure_once(launcher, argv, env):
    # The VMM's resource usage comes from rusage_exec (through a pipe),
    # not from os.wait4 here: see rusage_exec.c.
    result_r, result_w = os.pipe()
    start = time.monotonic()
    try:
        proc = subprocess.Popen([launcher, str(result_w), *argv], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                pass_fds=(result_w,), env=env, start_new_session=True)
    finally:
        os.close(result_w)
    # The VMM is rusage_exec's child: kill the whole process group.
    timed_out = threading.Event()

    def kill():
        timed_out.set()
        os.killpg(proc.pid, signal.SIGKILL)

    killer = threading.Timer(RUN_TIMEOUT_S, kill)
    killer.start()
    # Waiting before reading stderr would deadlock on a full pipe; the guest
    # says nothing, so a VMM writing more than a pipe's worth is a failure
    # we want to see anyway: read it all, then reap.
    err = proc.stderr.read()
    proc.wait()
    wall = time.monotonic() - start
    killer.cancel()
    proc.stderr.close()
    with os.fdopen(result_r) as f:
        line = f.read().split()
    if timed_out.is_set():
        sys.exit(f"measure.py: {shlex.join(argv)} did not finish within {RUN_TIMEOUT_S} s (killed)")
    if proc.returncode != 0 or len(line) != 8:
        sys.exit(f"measure.py: {launcher} failed (exit {proc.returncode}): "
                 f"{err.decode(errors='replace').strip()}")
    r = dict(zip(line[0::2], map(int, line[1::2])))
    return {
        "wall": wall,
        "user": r["utime_us"] / 1e6,
        "sys": r["stime_us"] / 1e6,
        "cpu": (r["utime_us"] + r["stime_us"]) / 1e6,
        "rss": r["maxrss_kib"],
        "status": r["status"],
        "stderr": err.decode(errors="replace").strip(),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--launcher", required=True, help="rusage_exec (bench/boot/rusage_exec.c)")
    parser.add_argument("--expect-status", type=int, default=1)
    parser.add_argument("--silent", action="append", default=[], metavar="NAME",
                        help="a run of NAME counts only if it writes nothing to stderr")
    parser.add_argument("--env", action="append", default=[], metavar="NAME:VAR=VALUE",
                        help="run NAME with VAR=VALUE added to its environment")
    parser.add_argument("--target", action="append", default=[], metavar="COLUMN=VALUE",
                        help="also print the first VMM's figure over VALUE for COLUMN "
                             "(wall, user, sys, cpu in ms; rss in MiB)")
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
    envs = {name: dict(os.environ) for name, _ in vmms}
    for spec in args.env:
        name, _, assignment = spec.partition(":")
        var, sep, value = assignment.partition("=")
        if name not in envs or not sep or not var:
            sys.exit(f"measure.py: --env expects NAME:VAR=VALUE for a NAME given, got {spec!r}")
        envs[name][var] = value
    targets = {}
    for spec in args.target:
        key, _, value = spec.partition("=")
        try:
            targets[key] = float(value)
        except ValueError:
            sys.exit(f"measure.py: --target expects COLUMN=NUMBER, got {spec!r}")
        if key not in {k for _, k, _ in COLS} or targets[key] <= 0:
            sys.exit(f"measure.py: --target {spec!r}: COLUMN is one of wall, user, sys, cpu, rss "
                     "and the figure is positive")

    for name, argv in vmms:
        print(f"{name}: {shlex.join(argv)}")
    samples = {name: [] for name, _ in vmms}
    for i in range(args.runs + 1):  # run 0 is the warm-up
        for name, argv in vmms:
            m = measure_once(args.launcher, argv, envs[name])
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

    print(f"\nmedians of {args.runs} runs each (alternating), guest exit status {args.expect_status}:")
    header = f"{'':<12}" + "".join(f"{title:>14}" for title, _, _ in COLS)
    print(header)
    for name, _ in vmms:
        print(f"{name:<12}" + "".join(f"{median(name, key) * scale:>14.1f}" for _, key, scale in COLS))
    if len(vmms) >= 2:
        (a, _), (b, _) = vmms[:2]
        ratios = []
        for _, key, _ in COLS:
            denom = median(b, key)
            ratios.append(f"{median(a, key) / denom:>14.2f}" if denom > 0 else f"{'n/a':>14}")
        print(f"{a + '/' + b:<12}" + "".join(ratios))
    if targets:
        first = vmms[0][0]
        print(f"{'target':<12}" + "".join(f"{targets[key]:>14.1f}" if key in targets else f"{'':>14}"
                                        for _, key, _ in COLS))
        print(f"{first + '/target':<12}" + "".join(
            f"{median(first, key) * scale / targets[key]:>14.2f}" if key in targets else f"{'':>14}"
            for _, key, scale in COLS))


if __name__ == "__main__":
    main()
