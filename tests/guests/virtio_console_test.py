#!/usr/bin/env python3
"""Runs the virtio_console test guest (a polling virtio 1.x console driver)
and checks what reached the host end of the console.

  virtio_console_test.py --vmm qemu --elf virtio_console.pvh.elf
  virtio_console_test.py --vmm skiff-file --skiff SKIFF --elf ...   (--console file=, event monitor)
  virtio_console_test.py --vmm skiff-tty --skiff SKIFF --elf ...    (--console tty, echo over stdin)

QEMU (-device virtio-serial-pci,disable-legacy=on -device virtconsole) is the
reference that proves the guest right; it uses KVM when /dev/kvm is there
and otherwise -accel tcg -cpu max (said in the output). skiff needs KVM: no
/dev/kvm is a skip. The echoed token is random, chosen here.
Exit 0 pass, 1 fail, 77 skipped.
"""
import argparse
import json
import os
import random
import string
import subprocess
import sys
import tempfile
import time

from guest_harness import have_kvm, qemu_command, skip, values, verdict

OK_EXIT = (0x10 << 1) | 1


def run_qemu(a, tmp, token):
    # -chardev pipe: QEMU uses BASE.in / BASE.out when they exist. Both
    # FIFOs are held open here (O_RDWR: no waiting for the other end), so
    # QEMU never sees end of input (which would close the port and drop the
    # guest's output) and the output stays readable after QEMU exits.
    base = os.path.join(tmp, "console")
    os.mkfifo(base + ".in")
    os.mkfifo(base + ".out")
    fin = os.open(base + ".in", os.O_RDWR)
    fout = os.open(base + ".out", os.O_RDWR | os.O_NONBLOCK)
    os.write(fin, f"{token}\n".encode())
    cmd = qemu_command(a.elf, "echo=1 reset=1",
           "-device", "virtio-serial-pci,disable-legacy=on",
           "-chardev", f"pipe,id=con0,path={base}",
           "-device", "virtconsole,chardev=con0,nr=0")
    console = b""
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=170)
        while True:
            try:
                chunk = os.read(fout, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            console += chunk
    finally:
        os.close(fin)
        os.close(fout)
    console = console.decode(errors="replace")
    return p.returncode, p.stdout, console, None


def run_skiff_file(a, tmp):
    out_path = os.path.join(tmp, "console.out")
    sock = os.path.join(tmp, "api.sock")
    events = os.path.join(tmp, "events.json")
    cmd = [a.skiff, "--kernel", a.elf, "--cmdline", "echo=0 reset=1", "--serial", "tty",
           "--console", f"file={out_path}", "--api-socket", f"path={sock}",
           "--event-monitor", f"path={events}"]
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    # With --api-socket skiff stays up after the guest stops: wait for the
    # shutdown event, then ask the VMM to exit.
    deadline = time.time() + 150
    while time.time() < deadline and p.poll() is None:
        if os.path.exists(events) and '"event":"shutdown"' in open(events).read():
            break
        time.sleep(0.1)
    subprocess.run(["curl", "-s", "--unix-socket", sock, "-X", "PUT",
                    "http://localhost/api/v1/vmm.shutdown"], capture_output=True, timeout=10)
    try:
        out, _ = p.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    with open(out_path, "rb") as f:
        console = f.read().decode(errors="replace")
    evs = [json.loads(l) for l in open(events)] if os.path.exists(events) else []
    # The guest's exit status is in the shutdown event (skiff itself exits 0).
    status = None
    for e in evs:
        if e["source"] == "vm" and e["event"] == "shutdown" and e["properties"]:
            # skiff's shutdown event carries the exit status itself ((v << 1) | 1,
            # Outcome::debug_status), not the byte v the guest wrote.
            status = int(e["properties"].get("status", "-1"))
    return status, out, console, evs


def run_skiff_tty(a, tmp, token):
    serial = os.path.join(tmp, "serial.out")
    cmd = [a.skiff, "--kernel", a.elf, "--cmdline", "echo=1", "--serial", f"file={serial}",
           "--console", "tty"]
    p = subprocess.run(cmd, input=f"{token}\n", stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=150)
    with open(serial) as f:
        out = f.read()
    return p.returncode, out + p.stderr, p.stdout, None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vmm", choices=["qemu", "skiff-file", "skiff-tty"], required=True)
    ap.add_argument("--elf", required=True)
    ap.add_argument("--skiff")
    a = ap.parse_args()
    if a.vmm != "qemu" and not have_kvm():
        skip("/dev/kvm is not available")

    token = "".join(random.choice(string.ascii_letters + string.digits) for _ in range(16))
    with tempfile.TemporaryDirectory(prefix="skcon") as tmp:
        if a.vmm == "qemu":
            status, out, console, events = run_qemu(a, tmp, token)
        elif a.vmm == "skiff-file":
            status, out, console, events = run_skiff_file(a, tmp)
        else:
            status, out, console, events = run_skiff_tty(a, tmp, token)

    failures = []

    def expect(cond, what):
        if not cond:
            failures.append(what)

    echo = a.vmm != "skiff-file"
    expect(values(out, "CONSOLE_TX") == ["ok"], "transmit did not complete")
    expect("hello from hvc0\n" in console, "'hello from hvc0' not on the host end")
    feats = values(out, "CONSOLE_FEATURES")
    expect(len(feats) == 1, "no CONSOLE_FEATURES line")
    if feats and int(feats[0], 16) & (1 << 2):
        expect("EMERG=ok\n" in console, "emergency writes did not reach the host end")
    if echo:
        expect(values(out, "CONSOLE_RX") == [token], f"guest did not receive {token}")
        expect(f"echo: {token}\n" in console, "echo did not come back")
    if a.vmm != "skiff-tty":
        expect(values(out, "CONSOLE_RESET") == ["ok"], "device reset after DRIVER_OK failed")
    expect("VIRTIO_CONSOLE_DONE" in out, "guest did not finish")
    expect(status == OK_EXIT, f"guest exit status {status}, want {OK_EXIT}")
    if a.vmm == "skiff-file":
        mine = [e for e in events or [] if e["source"] == "virtio-device"]
        expect({"source": "virtio-device", "event": "activated", "properties": {"id": "console0"}}
               in [{k: e[k] for k in ("source", "event", "properties")} for e in mine],
               "no 'activated' event for console0")
        expect(any(e["event"] == "reset" and e["properties"] == {"id": "console0"} for e in mine),
               "no 'reset' event for console0 after the guest reset it")
    print(out)
    print("--- console host end ---")
    print(console)
    if events is not None:
        print("--- events ---")
        for e in events:
            print(json.dumps(e))
    return verdict(failures)


if __name__ == "__main__":
    sys.exit(main())
