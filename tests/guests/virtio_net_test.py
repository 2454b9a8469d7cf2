#!/usr/bin/env python3
"""Runs the virtio_net test guest (a polling virtio 1.x net driver) under QEMU
(-netdev tap,vhost=off -device virtio-net-pci) or skiff (--net tap=...) and
plays the host side on the tap: a raw packet socket that reads the frames
the guest sends and writes the frames the guest must receive.

  virtio_net_test.py --vmm qemu --elf virtio_net.pvh.elf
  virtio_net_test.py --vmm skiff --skiff path/to/skiff --elf virtio_net.pvh.elf
  virtio_net_test.py --vmm skiff --vhost ...   (--net ...,vhost=on: the kernel's
      vhost-net carries the frames; skiff -v must say so, a fallback fails;
      no /dev/vhost-net is a skip)

Everything happens inside a network namespace this script creates (ip netns
add) and deletes: the tap, its traffic and the VMM live there; nothing leaves
the machine. The tap is created (and the socket bound) before the VMM starts,
so no frame can be missed. The MAC, the seed and thus every frame's bytes
are chosen here at random. QEMU is the reference that proves the guest right:
it uses KVM when /dev/kvm is there, else -accel tcg -cpu max (said in the
output). skiff needs KVM: no /dev/kvm is a skip. Needs root (namespaces,
taps). Exit 0 pass, 1 fail, 77 skipped.
"""
import argparse
import os
import random
import select
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time

from guest_harness import have_kvm, qemu_binary, qemu_command, skip, values, verdict

ETYPE_TX = 0x88B5  # guest -> host
ETYPE_RX = 0x88B6  # host -> guest
PACKET_OUTGOING = 4
TAP = "sktap0"


def frame_len(i):
    return 60 + (i * 97) % 1455


def payload(i, seed, n):
    """Bytes 14.. of frame i, as virtio_net.c builds them."""
    body = b"SKNT" + struct.pack("<I", i)
    return body + bytes((i * 31 + seed + k) & 0xFF for k in range(22, n))


def guest_frame(i, seed, mac):
    n = frame_len(i)
    return b"\xff" * 6 + mac + struct.pack(">H", ETYPE_TX) + payload(i, seed, n)


def host_frame(i, seed, mac):
    n = frame_len(i)
    host_mac = bytes.fromhex("02feedc0ffee")
    return mac + host_mac + struct.pack(">H", ETYPE_RX) + payload(i, seed, n)


def run(cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def inner(a):
    """Inside the namespace: tap, socket, VMM, exchange."""
    rnd = random.Random()
    seed = rnd.randrange(1, 1 << 16)
    mac = bytes([0x52, 0x54, 0x00] + [rnd.randrange(256) for _ in range(3)])
    mac_text = ":".join(f"{b:02x}" for b in mac)
    frames = a.frames

    run(["ip", "tuntap", "add", "dev", TAP, "mode", "tap"])
    # No IPv6 autoconfiguration noise on the tap (the guest skips it anyway).
    try:
        with open(f"/proc/sys/net/ipv6/conf/{TAP}/disable_ipv6", "w") as f:
            f.write("1")
    except OSError:
        pass
    run(["ip", "link", "set", TAP, "up"])
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    sock.bind((TAP, 0))

    cmdline = f"frames={frames} seed={seed}"
    if a.vmm == "qemu":
        cmd = qemu_command(a.elf, cmdline,
               "-netdev", f"tap,id=n0,ifname={TAP},script=no,downscript=no,"
               f"vhost={'on' if a.vhost else 'off'}",
               "-device", f"virtio-net-pci,netdev=n0,disable-legacy=on,mac={mac_text},romfile=")
    else:
        # -v: the info line that says which data path the device got.
        cmd = [a.skiff, "--kernel", a.elf, "--cmdline", cmdline, "--serial", "tty",
               "--cpus", "boot=1", "--net",
               f"tap={TAP},mac={mac_text}" + (",vhost=on" if a.vhost else "")] + \
              (["-v"] if a.vhost else [])
    print("+", " ".join(cmd), flush=True)
    vmm = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    out_parts = []
    reader = threading.Thread(target=lambda: out_parts.append(vmm.stdout.read()), daemon=True)
    reader.start()

    failures = []

    def expect(cond, what):
        if not cond:
            failures.append(what)

    # 1. The guest's frames, in order, exactly as built.
    got = 0
    other = 0
    t_first = t_last = None
    deadline = time.monotonic() + a.timeout
    while got < frames and time.monotonic() < deadline and vmm.poll() is None:
        r, _, _ = select.select([sock], [], [], 0.5)
        if not r:
            continue
        data, addr = sock.recvfrom(65536)
        if addr[2] == PACKET_OUTGOING or len(data) < 14 or data[12:14] != struct.pack(">H", ETYPE_TX):
            other += 1
            continue
        want = guest_frame(got, seed, mac)
        if data != want:
            failures.append(f"guest frame {got}: {len(data)} bytes, differs from the expected "
                            f"{len(want)} (first 32: {data[:32].hex()})")
            break
        got += 1
        t_last = time.monotonic()
        if t_first is None:
            t_first = t_last
    expect(got == frames, f"host received {got} of {frames} guest frames")

    # 2. Frames for the guest to check.
    t_send = time.monotonic()
    if got == frames:
        for i in range(frames):
            sock.send(host_frame(i, seed, mac))
    try:
        vmm.wait(timeout=a.timeout)
        t_exit = time.monotonic()
    except subprocess.TimeoutExpired:
        vmm.kill()
        vmm.wait()
        failures.append("the VMM did not exit in time")
    reader.join(timeout=10)
    out = "".join(out_parts)
    sock.close()

    pci = values(out, "PCI")
    expect(any(v.endswith(":1af4:1041") for v in pci), f"no virtio-net in PCI list {pci}")
    expect(values(out, "NET_MAC") == [mac_text], f"guest saw MAC {values(out, 'NET_MAC')}, "
           f"configured {mac_text}")
    link = values(out, "NET_LINK")
    expect(link in ([], ["1"]), f"link status {link}")
    expect(values(out, "TX_FRAMES") == [str(frames)], "guest TX_FRAMES")
    expect(values(out, "TX_BYTES") == [str(sum(frame_len(i) for i in range(frames)))], "TX_BYTES")
    expect(values(out, "RX_FRAMES") == [str(frames)], "guest RX_FRAMES")
    expect(values(out, "RX_BYTES") == [str(sum(frame_len(i) for i in range(frames)))], "RX_BYTES")
    expect("NET_DONE" in out, "guest did not finish")
    expect(vmm.returncode == (0x10 << 1) | 1, f"exit status {vmm.returncode}, want 33")
    if a.vmm == "skiff" and a.vhost:
        # The frames must have crossed the kernel's vhost-net, not skiff's
        # own data path (net_devices.cc logs one or the other).
        expect("data path in the kernel (/dev/vhost-net)" in out,
               "skiff did not report the vhost-net data path")
        expect("using skiff's own virtio-net data path" not in out,
               "skiff fell back to its own data path despite /dev/vhost-net")
    print(out)
    print(f"host: {got} guest frames checked, {other} other frames skipped; MAC {mac_text}, "
          f"seed {seed}")
    if not failures and frames > 1:
        # For bench/net/run.sh: the guest sends one frame at a time (a notify
        # per frame) and polls; rx time runs from the host's first send to
        # the VMM's exit, so it includes the VMM's shutdown.
        print(f"RATE tx_frames_per_s={(frames - 1) / max(t_last - t_first, 1e-9):.0f} "
              f"rx_frames_per_s={frames / max(t_exit - t_send, 1e-9):.0f}")
    return verdict(failures)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vmm", choices=["qemu", "skiff"], required=True)
    ap.add_argument("--elf", required=True)
    ap.add_argument("--skiff")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--vhost", action="store_true", help="vhost=on (bench/net/run.sh)")
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    # The host sends all frames at once; the tap queue holds 1000.
    if not 1 <= a.frames <= 900:
        ap.error(f"--frames {a.frames}: 1..900 (the tap queue holds 1000 frames)")
    if a.inner:
        return inner(a)

    if a.vmm == "skiff" and not have_kvm():
        skip("/dev/kvm is not available")
    if a.vmm == "qemu":
        qemu_binary()  # a skip when it is missing
    if os.geteuid() != 0:
        skip("needs root to create a network namespace and a tap")
    if not os.path.exists("/dev/net/tun"):
        skip("/dev/net/tun is missing")
    if a.vhost and not os.access("/dev/vhost-net", os.R_OK | os.W_OK):
        skip(f"/dev/vhost-net is not available for {a.vmm}'s vhost=on (modprobe vhost_net)")
    if not shutil.which("ip"):
        skip("ip (iproute2) is not installed")
    ns = f"skiffnet{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", ns], stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        skip(f"cannot create a network namespace: {r.stderr.strip()}")
    try:
        cmd = ["ip", "netns", "exec", ns, sys.executable, os.path.abspath(__file__), "--inner",
               "--vmm", a.vmm, "--elf", os.path.abspath(a.elf), "--frames", str(a.frames),
               "--timeout", str(a.timeout)] + (["--vhost"] if a.vhost else [])
        if a.skiff:
            cmd += ["--skiff", os.path.abspath(a.skiff)]
        return subprocess.run(cmd).returncode
    finally:
        subprocess.run(["ip", "netns", "del", ns])


if __name__ == "__main__":
    sys.exit(main())
