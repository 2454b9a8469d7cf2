#!/usr/bin/env python3
"""ACPI power button end to end: the ged_power test guest routes the GSI its
DSDT gives the Generic Event Device, says GED_READY, and the harness presses
the power button from outside; the guest checks the interrupt arrived, the
event register had the power-button bit, a second read gave 0
(read-to-clear) and the line dropped (no second interrupt; for a
level-triggered GED the IOAPIC's remote IRR was set until the EOI and clear
after it).

  ged_power_test.py --vmm qemu --elf ged_power.pvh.elf
  ged_power_test.py --vmm skiff --skiff path/to/skiff --elf ged_power.pvh.elf

QEMU (-M microvm,acpi=on: its acpi-ged, MMIO 0xfea00000, GSI 9, power-down
event bit 1 (0x2), raised by QMP system_powerdown) is the reference that
proves the guest right; it uses KVM when /dev/kvm is there and otherwise
-accel tcg -cpu max (said in the output). With --trigger level the
QEMU run programs the IOAPIC as level for QEMU's pulsed line, which proves
the guest's remote-IRR checks (the ones skiff's level-triggered GED gets)
under the reference too. skiff (I/O port 0x608, GSI 20,
bit 0: src/arch/x86/layout.h, src/devices/ged.h) gets the press through
PUT /api/v1/vm.power-button; it needs KVM: no /dev/kvm is a skip.
Exit 0 pass, 1 fail, 77 skipped.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

from guest_harness import have_kvm, qemu_command, skip, values, verdict

OK_EXIT = (0x10 << 1) | 1
READY_TIMEOUT = 60  # seconds from start to GED_READY (TCG, CI's nested KVM)
DONE_TIMEOUT = 30  # seconds from the press to the guest's exit

# What each VMM's GED is, as the guest must find it (DSDT _CRS, MADT) and
# the register's place and bit, which only the _EVT AML says (command line).
VMMS = {
    "qemu": {"cmdline": "ged_mmio=0xfea00000 bit=1 gsi=9",
             "want": {"GED_CRS_GSI": "9", "GED_PIN": "9", "GED_EVENT": "0x2"}},
    "skiff": {"cmdline": "ged_io=0x608 bit=0 gsi=20",
              "want": {"GED_CRS_GSI": "20", "GED_CRS_TRIGGER": "level", "GED_CRS_POLARITY": "high",
                       "GED_IOAPIC": "0xfec00000", "GED_PIN": "20", "GED_EVENT": "0x1",
                       "GED_REMOTE_IRR": "1", "GED_REMOTE_IRR_AFTER_EOI": "0"}},
}
COMMON_WANT = {"GED_INITIAL": "0x0", "GED_IRQS": "1", "GED_ISR": "1", "GED_EVENT_AGAIN": "0x0",
               "GED_PENDING_AFTER": "0x0"}


def wait_until(pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def qmp(path, *commands):
    """Runs QMP commands (each a name) on the socket; their replies."""
    replies = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        f = s.makefile("rw")
        json.loads(f.readline())  # greeting
        for c in ("qmp_capabilities",) + commands:
            f.write(json.dumps({"execute": c}) + "\n")
            f.flush()
            while True:  # skip asynchronous events (POWERDOWN, ...)
                r = json.loads(f.readline())
                if "return" in r or "error" in r:
                    replies.append(r)
                    break
    return replies


def run_qemu(a, tmp, failures):
    sock = os.path.join(tmp, "qmp.sock")
    cmd = qemu_command(a.elf, VMMS["qemu"]["cmdline"], "-qmp", f"unix:{sock},server=on,wait=off",
                       machine="microvm,acpi=on")
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    out = []
    reader = threading.Thread(target=lambda: out.extend(p.stdout), daemon=True)
    reader.start()
    try:
        if not wait_until(lambda: any(l.startswith("GED_READY") for l in out) or p.poll() is not None,
                          READY_TIMEOUT) or p.poll() is not None:
            failures.append("the guest did not reach GED_READY")
        else:
            replies = qmp(sock, "system_powerdown")
            if any("error" in r for r in replies):
                failures.append(f"QMP: {replies}")
        p.wait(timeout=DONE_TIMEOUT)
    except subprocess.TimeoutExpired:
        failures.append("QEMU did not exit after the press")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        reader.join(timeout=5)
    return p.returncode, "".join(out)


def curl(sock, method, endpoint):
    p = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20",
                        "--unix-socket", sock, "-X", method, f"http://localhost/api/v1/{endpoint}"],
                       capture_output=True, text=True, timeout=30)
    return p.stdout.strip()


def run_skiff(a, tmp, failures):
    sock = os.path.join(tmp, "api.sock")
    serial = os.path.join(tmp, "serial.out")
    events = os.path.join(tmp, "events.json")
    cmd = [a.skiff, "--kernel", a.elf, "--cmdline", VMMS["skiff"]["cmdline"],
           "--serial", f"file={serial}", "--api-socket", f"path={sock}",
           "--event-monitor", f"path={events}"]
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)

    def read(path):
        try:
            with open(path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def evs():
        out = []
        for line in read(events).splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:  # a line skiff is still writing
                pass
        return out

    def shutdown_event():
        return next((e for e in evs() if e["source"] == "vm" and e["event"] == "shutdown"), None)

    status = None
    try:
        if not wait_until(lambda: "GED_READY" in read(serial) or p.poll() is not None, READY_TIMEOUT) \
                or p.poll() is not None:
            failures.append("the guest did not reach GED_READY")
        else:
            code = curl(sock, "PUT", "vm.power-button")
            if code != "204":
                failures.append(f"PUT vm.power-button answered {code}, want 204")
            # With --api-socket skiff stays up after the guest stops; the
            # guest's exit status is in the shutdown event ((v << 1) | 1).
            if wait_until(lambda: shutdown_event() is not None, DONE_TIMEOUT):
                status = int(shutdown_event()["properties"].get("status", "-1"))
            else:
                failures.append("the guest did not stop after the press")
            if not any(e["source"] == "vm" and e["event"] == "power-button" for e in evs()):
                failures.append("no power-button event on the event monitor")
    finally:
        if p.poll() is None:
            curl(sock, "PUT", "vmm.shutdown")
        try:
            log, _ = p.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            log, _ = p.communicate()
    print("--- skiff log ---")
    print(log)
    print("--- events ---")
    print(read(events))
    return status, read(serial)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vmm", choices=["qemu", "skiff"], required=True)
    ap.add_argument("--elf", required=True)
    ap.add_argument("--skiff")
    ap.add_argument("--trigger", choices=["level", "edge"],
                    help="program the IOAPIC so instead of as the GED's _CRS says")
    a = ap.parse_args()
    if a.vmm == "skiff" and not have_kvm():
        skip("/dev/kvm is not available")
    want = {**COMMON_WANT, **VMMS[a.vmm]["want"]}
    if a.trigger:
        VMMS[a.vmm]["cmdline"] += f" trigger={a.trigger}"
        want["GED_TRIGGER_OVERRIDE"] = a.trigger
    if a.trigger == "level":
        want.update({"GED_REMOTE_IRR": "1", "GED_REMOTE_IRR_AFTER_EOI": "0"})
    failures = []
    with tempfile.TemporaryDirectory(prefix="skged") as tmp:
        if a.vmm == "qemu":
            status, out = run_qemu(a, tmp, failures)
        else:
            status, out = run_skiff(a, tmp, failures)
    print("--- guest serial ---")
    print(out)
    for key, value in want.items():
        if values(out, key) != [value]:
            failures.append(f"{key}={values(out, key)}, want {value}")
    if "GED_POWER_BUTTON_OK" not in out:
        failures.append("the guest did not print GED_POWER_BUTTON_OK")
    if status != OK_EXIT:
        failures.append(f"guest exit status {status}, want {OK_EXIT}")
    return verdict(failures)


if __name__ == "__main__":
    sys.exit(main())
