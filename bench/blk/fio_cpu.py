#!/usr/bin/env python3
"""Runs one fio job and prints its IOPS and the CPU time the whole fio
process used per second, io_uring's io-wq worker threads included:

    fio_cpu.py SECONDS FIO-ARGS...   ->   "IOPS CPU_PER_S IOPS_PER_CPU_S OWN_IOPS_PER_CPU_S"

fio's own usr_cpu/sys_cpu (the last figure, for reference) count only the
job's thread: on tmpfs the kernel serves io_uring reads in io-wq worker
threads of the process, whose CPU time fio does not report, while
blk_bench's getrusage(RUSAGE_SELF) counts every thread. To compare like
with like, the job runs as a thread (--thread, so the whole job is one
process) and the process's utime+stime (/proc/PID/stat, which covers all
its threads, exited ones too) is sampled over the steady part of the run:
from 1 s after the start to 0.5 s before the end.
"""
import json
import os
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14, 15)


def main():
    secs = float(sys.argv[1])
    if secs < 2:
        sys.exit("fio_cpu.py: SECONDS must be at least 2 (a 1 s warm-up and a 0.5 s tail are skipped)")
    p = subprocess.Popen(["fio", "--thread", f"--runtime={secs:g}", "--time_based",
                          "--output-format=json"] + sys.argv[2:], stdout=subprocess.PIPE)
    t_start = time.monotonic()
    time.sleep(1.0)
    c0, t0 = cpu_seconds(p.pid), time.monotonic()
    time.sleep(max(0.5, secs - 1.5 - (t0 - t_start)))
    c1, t1 = cpu_seconds(p.pid), time.monotonic()
    out, _ = p.communicate()
    if p.returncode != 0:
        sys.exit(f"fio_cpu.py: fio exited with {p.returncode}")
    job = json.loads(out)["jobs"][0]
    ios = job["read"]["total_ios"] + job["write"]["total_ios"]
    wall = job["job_runtime"] / 1000.0
    iops = ios / wall
    cpu_rate = (c1 - c0) / (t1 - t0)
    own = (job["usr_cpu"] + job["sys_cpu"]) / 100.0
    print(f"{iops:.0f} {cpu_rate:.3f} {iops / cpu_rate:.0f} {iops / own:.0f}")


if __name__ == "__main__":
    main()
