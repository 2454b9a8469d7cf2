#!/usr/bin/env python3
"""skiff-img against Debian's qemu-img/qemu-io, both directions.

Usage: interop_test.py SKIFF_IMG SCRATCH_DIR
Every image skiff-img writes must pass `qemu-img check` and compare equal to
the expected content; every image qemu-img writes must read back identically
through skiff-img. Exits 77 (CTest SKIP) when qemu-img is not installed.
"""
import json
import os
import random
import shutil
import struct
import subprocess
import sys

SKIFF = sys.argv[1]
DIR = sys.argv[2]
failures = []


def run(*args, check=None):
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if check is not None and p.returncode != check:
        raise AssertionError(f"{' '.join(map(str, args))}: exit {p.returncode}, want {check}\n"
                             f"{p.stdout}{p.stderr}")
    return p


def skiff(*args, check=0):
    return run(SKIFF, *args, check=check)


def qemu_img(*args, check=0):
    return run("qemu-img", *args, check=check)


def qemu_io(img, cmd, fmt="qcow2"):
    p = run("qemu-io", "-f", fmt, "-c", cmd, img, check=0)
    assert "failed" not in p.stdout + p.stderr, p.stdout + p.stderr


def path(name):
    return os.path.join(DIR, name)


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def random_ops(images, size, rng, count=30):
    """The same random writes/discards/zero writes on every (image, fmt)."""
    for _ in range(count):
        off = rng.randrange(0, size // 512) * 512
        length = min(rng.randrange(1, 256) * 512, size - off)
        kind = rng.random()
        if kind < 0.7:
            cmd = f"write -P {rng.randrange(1, 256)} {off} {length}"
        elif kind < 0.85:
            cmd = f"write -z {off} {length}"
        else:
            # discard leaves unspecified content, so the raw twin gets zeroes
            # written and the qcow2 a zero write with unmap (reads as zero).
            cmd = None
        for img, fmt in images:
            if cmd is None:
                qemu_io(img, f"write -z -u {off} {length}" if fmt == "qcow2"
                        else f"write -z {off} {length}", fmt)
            else:
                qemu_io(img, cmd, fmt)


def write_random_raw(name, size, rng, holes=True):
    p = path(name)
    with open(p, "wb") as f:
        f.truncate(size)
        for off in range(0, size, 65536):
            r = rng.random()
            if holes and r < 0.3:
                continue
            f.seek(off)
            if r < 0.6:
                f.write(rng.randbytes(65536))  # incompressible
            else:
                f.write(bytes([rng.randrange(256)]) * 65536)  # compressible
    return p


def qcow2_check_clean(img):
    p = qemu_img("check", img, check=None)
    expect(p.returncode == 0, f"qemu-img check {img}: exit {p.returncode}\n{p.stdout}{p.stderr}")


def same_content(img, raw, what=""):
    p = qemu_img("compare", img, raw, check=None)
    expect(p.returncode == 0, f"{what}: qemu-img compare {img} {raw}: {p.stdout}{p.stderr}")
    p = skiff("compare", img, raw, check=None)
    expect(p.returncode == 0, f"skiff-img compare {img} {raw}: {p.returncode} {p.stdout}{p.stderr}")


def info_json(tool, img, *extra):
    out = (skiff if tool == "skiff" else qemu_img)("info", "--output=json", *extra, img).stdout
    return json.loads(out)


def strip_actual(j):
    if isinstance(j, list):
        return [strip_actual(x) for x in j]
    j = dict(j)
    j.pop("actual-size", None)
    return j


def info_matches(img, *extra):
    a = strip_actual(info_json("skiff", img, *extra))
    b = strip_actual(info_json("qemu", img, *extra))
    expect(a == b, f"info {img}:\nskiff {json.dumps(a, sort_keys=True)}\n"
                   f"qemu  {json.dumps(b, sort_keys=True)}")


def snapshot_ids_names(tool, img):
    out = (skiff if tool == "skiff" else qemu_img)("snapshot", "-l", img).stdout
    rows = [l.split()[:2] for l in out.splitlines()[2:] if l.strip()]
    return rows


def poke_refcount(img, cluster, value):
    """Hand-edits a 16-bit refcount entry, as a corrupting tool would."""
    with open(img, "r+b") as f:
        hdr = f.read(104)
        cluster_bits = struct.unpack(">I", hdr[20:24])[0]
        rt_off = struct.unpack(">Q", hdr[48:56])[0]
        per_block = (1 << cluster_bits) // 2
        f.seek(rt_off + 8 * (cluster // per_block))
        block = struct.unpack(">Q", f.read(8))[0]
        f.seek(block + 2 * (cluster % per_block))
        f.write(struct.pack(">H", value))


# --- cases -----------------------------------------------------------------

def case_plain_images_written_by_skiff(rng):
    for opts in ["cluster_size=65536", "cluster_size=4096,compat=0.10",
                 "cluster_size=512,refcount_bits=8", "lazy_refcounts=on",
                 "preallocation=metadata", "cluster_size=2M"]:
        img, raw = path("plain.qcow2"), path("plain.raw")
        size = 8 << 20
        skiff("create", "-f", "qcow2", "-o", opts, img, str(size))
        skiff("create", "-f", "raw", raw, "8M")
        qcow2_check_clean(img)
        random_ops([(img, "qcow2"), (raw, "raw")], size, rng)
        qcow2_check_clean(img)
        same_content(img, raw)
        info_matches(img)
        p = skiff("check", img, check=None)
        expect(p.returncode == 0, f"skiff-img check {opts}: {p.returncode} {p.stdout}{p.stderr}")


def case_backing_chain(rng):
    base, mid, top = path("base.qcow2"), path("mid.qcow2"), path("top.qcow2")
    model = path("chain.raw")
    skiff("create", "-f", "qcow2", base, "6M")
    skiff("create", "-f", "raw", model, "6M")
    random_ops([(base, "qcow2"), (model, "raw")], 6 << 20, rng, 10)
    # relative names, resolved against the overlay's directory; no SIZE given
    skiff("create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", mid)
    skiff("create", "-f", "qcow2", "-o", "backing_file=mid.qcow2,backing_fmt=qcow2", top)
    expect(info_json("qemu", top)["virtual-size"] == 6 << 20, "overlay size from backing")
    random_ops([(mid, "qcow2"), (model, "raw")], 6 << 20, rng, 10)
    random_ops([(top, "qcow2"), (model, "raw")], 6 << 20, rng, 10)
    for img in (base, mid, top):
        qcow2_check_clean(img)
    same_content(top, model, "chain step 1")
    info_matches(top)
    info_matches(top, "--backing-chain")
    a = skiff("map", "--output=json", top).stdout
    b = qemu_img("map", "--output=json", top).stdout
    expect(a == b, f"map differs:\nskiff {a}\nqemu  {b}")
    # convert flattens the chain
    skiff("convert", "-O", "qcow2", top, path("flat.qcow2"))
    qcow2_check_clean(path("flat.qcow2"))
    same_content(path("flat.qcow2"), model)
    # commit mid into base: base then reads as mid did
    before = path("mid_content.raw")
    qemu_img("convert", "-O", "raw", mid, before)
    # the same commit by qemu-img on a copy of the chain, for reference
    ref = path("ref")
    os.makedirs(ref, exist_ok=True)
    shutil.copy(base, os.path.join(ref, "base.qcow2"))
    shutil.copy(mid, os.path.join(ref, "mid.qcow2"))
    qemu_img("commit", os.path.join(ref, "mid.qcow2"))
    skiff("commit", mid)
    qcow2_check_clean(base)
    qcow2_check_clean(mid)
    same_content(base, before, "chain step 2")
    # like qemu-img commit (no -d), the overlay is emptied: nothing in it is
    # allocated any more and it reads through to base
    for img in (mid, os.path.join(ref, "mid.qcow2")):
        layers = {e["depth"] for e in json.loads(qemu_img("map", "--output=json", img).stdout)}
        expect(0 not in layers, f"{img}: data still allocated in the overlay after commit")
    same_content(mid, before, "overlay after commit")
    same_content(os.path.join(ref, "base.qcow2"), before, "qemu-img's commit")
    same_content(top, model, "chain step 3")
    # safe rebase of top straight onto base keeps its content
    skiff("rebase", "-b", "base.qcow2", "-F", "qcow2", top)
    qcow2_check_clean(top)
    same_content(top, model, "chain step 4")
    expect(info_json("qemu", top)["backing-filename"] == "base.qcow2", "rebase rewrote header")
    # unsafe rebase only rewrites the header
    skiff("rebase", "-u", "-b", "mid.qcow2", "-F", "qcow2", top)
    expect(info_json("qemu", top)["backing-filename"] == "mid.qcow2", "rebase -u")


def case_snapshots_both_ways(rng):
    img, raw = path("snap.qcow2"), path("snap_now.raw")
    size = 4 << 20
    skiff("create", "-f", "qcow2", img, str(size))
    skiff("create", "-f", "raw", raw, str(size))
    contents = {}
    for name in ["one", "two"]:
        random_ops([(img, "qcow2"), (raw, "raw")], size, rng, 8)
        contents[name] = open(raw, "rb").read()
        skiff("snapshot", "-c", name, img)
    random_ops([(img, "qcow2"), (raw, "raw")], size, rng, 8)
    qemu_img("snapshot", "-c", "three", img)  # one made by qemu
    contents["three"] = open(raw, "rb").read()
    random_ops([(img, "qcow2"), (raw, "raw")], size, rng, 8)
    qcow2_check_clean(img)
    same_content(img, raw)
    expect(snapshot_ids_names("skiff", img) == snapshot_ids_names("qemu", img),
           f"snapshot -l differs:\n{skiff('snapshot', '-l', img).stdout}\n"
           f"{qemu_img('snapshot', '-l', img).stdout}")
    expect([r[1] for r in snapshot_ids_names("qemu", img)] == ["one", "two", "three"], "names")
    a, b = skiff("snapshot", "-l", img).stdout, qemu_img("snapshot", "-l", img).stdout
    expect(a == b, f"snapshot -l text differs:\n{a}\n{b}")
    a, b = skiff("info", img).stdout, qemu_img("info", img).stdout
    drop = lambda t: [l for l in t.splitlines() if not l.startswith("disk size")]
    expect(drop(a) == drop(b), f"info text differs:\n{a}\n{b}")
    info_matches(img)
    # skiff applies qemu's snapshot, qemu applies skiff's
    skiff("snapshot", "-a", "three", img)
    qcow2_check_clean(img)
    open(raw, "wb").write(contents["three"])
    same_content(img, raw)
    qemu_img("snapshot", "-a", "one", img)
    open(raw, "wb").write(contents["one"])
    same_content(img, raw)
    skiff("snapshot", "-a", "two", img)
    open(raw, "wb").write(contents["two"])
    same_content(img, raw)
    qcow2_check_clean(img)
    # delete: one by skiff (by ID), one by qemu
    skiff("snapshot", "-d", "1", img)
    qemu_img("snapshot", "-d", "three", img)
    qcow2_check_clean(img)
    expect(snapshot_ids_names("qemu", img) == [["2", "two"]], "after deletes")
    expect(snapshot_ids_names("skiff", img) == [["2", "two"]], "skiff list after deletes")
    p = skiff("snapshot", "-a", "nosuch", img, check=None)
    expect(p.returncode == 1 and "nosuch" in p.stderr, f"missing snapshot: {p.stderr}")
    p = skiff("check", img, check=None)
    expect(p.returncode == 0, p.stdout + p.stderr)


def case_compressed(rng):
    raw = write_random_raw("comp_src.raw", 6 << 20, rng)
    for ctype in ["zlib", "zstd"]:
        img = path(f"comp_{ctype}.qcow2")
        skiff("convert", "-c", "-O", "qcow2", "-o", f"compression_type={ctype}", raw, img)
        qcow2_check_clean(img)
        same_content(img, raw)
        info_matches(img)
        j = json.loads(qemu_img("check", "--output=json", img).stdout)
        expect(j.get("compressed-clusters", 0) > 0, f"{ctype}: no compressed clusters: {j}")
        # then random writes over compressed data
        twin = path("comp_twin.raw")
        shutil.copy(raw, twin)
        random_ops([(img, "qcow2"), (twin, "raw")], 6 << 20, rng, 10)
        qcow2_check_clean(img)
        same_content(img, twin)
        # qemu-written compressed images read back by skiff
        q = path(f"qemu_comp_{ctype}.qcow2")
        qemu_img("convert", "-c", "-O", "qcow2", "-o", f"compression_type={ctype}", raw, q)
        same_content(q, raw)
        out = path("back.raw")
        skiff("convert", "-O", "raw", q, out)
        expect(open(out, "rb").read() == open(raw, "rb").read(), f"{ctype} convert -O raw")


def case_convert_sparse(rng):
    raw = write_random_raw("sparse_src.raw", 8 << 20, rng)
    img = path("sparse.qcow2")
    skiff("convert", "-O", "qcow2", raw, img)
    qcow2_check_clean(img)
    same_content(img, raw)
    data = open(raw, "rb").read()
    nonzero = sum(1 for o in range(0, len(data), 65536) if any(data[o:o + 65536]))
    j = json.loads(qemu_img("check", "--output=json", img).stdout)
    expect(j.get("allocated-clusters", 0) == nonzero,
           f"convert not sparse: {j.get('allocated-clusters')} allocated, {nonzero} non-zero")


def case_qemu_written_images(rng):
    size = 6 << 20
    img, raw = path("q.qcow2"), path("q.raw")
    qemu_img("create", "-f", "qcow2", img, str(size))
    qemu_img("create", "-f", "raw", raw, str(size))
    random_ops([(img, "qcow2"), (raw, "raw")], size, rng)
    same_content(img, raw)
    out = path("q_back.raw")
    skiff("convert", "-O", "raw", img, out)
    expect(open(out, "rb").read() == open(raw, "rb").read(), "convert -O raw of qemu image")
    info_matches(img)
    over = path("q_over.qcow2")
    qemu_img("create", "-f", "qcow2", "-b", "q.qcow2", "-F", "qcow2", over)
    random_ops([(over, "qcow2"), (raw, "raw")], size, rng, 10)
    same_content(over, raw)
    skiff("convert", "-O", "raw", over, out)
    expect(open(out, "rb").read() == open(raw, "rb").read(), "convert of qemu chain")
    a = skiff("map", "--output=json", over).stdout
    b = qemu_img("map", "--output=json", over).stdout
    expect(a == b, f"map of qemu chain differs:\nskiff {a}\nqemu  {b}")


def case_check_agrees(rng):
    img = path("chk.qcow2")
    qemu_img("create", "-f", "qcow2", img, "4M")
    qemu_io(img, "write -P 7 0 512k")
    expect(skiff("check", img, check=None).returncode == 0, "clean image")
    j = json.loads(skiff("check", "--output=json", img).stdout)
    q = json.loads(qemu_img("check", "--output=json", img).stdout)
    expect(j == q, f"check json:\nskiff {j}\nqemu  {q}")
    # a leak: one cluster past the end with a refcount nobody references
    with open(img, "ab") as f:
        f.write(b"\0" * 65536)
    leaked = os.path.getsize(img) // 65536 - 1
    poke_refcount(img, leaked, 1)
    expect(qemu_img("check", img, check=None).returncode == 3, "qemu sees the leak")
    p = skiff("check", img, check=None)
    expect(p.returncode == 3, f"skiff check leak: {p.returncode}\n{p.stdout}{p.stderr}")
    j = json.loads(skiff("check", "--output=json", img, check=3).stdout)
    q = json.loads(qemu_img("check", "--output=json", img, check=3).stdout)
    expect(j == q, f"leak check json:\nskiff {j}\nqemu  {q}")
    p = skiff("check", "-r", "leaks", img, check=None)
    expect(p.returncode == 0, f"repair leaks: {p.returncode}\n{p.stdout}{p.stderr}")
    expect("1 leaked clusters" in p.stdout, p.stdout)
    qcow2_check_clean(img)
    # a corruption: a data cluster's refcount set to 0
    l2 = json.loads(qemu_img("map", "--output=json", img).stdout)
    data_off = next(e["offset"] for e in l2 if e.get("data"))
    before = path("chk_before.raw")
    qemu_img("convert", "-O", "raw", img, before)
    poke_refcount(img, data_off // 65536, 0)
    expect(qemu_img("check", img, check=None).returncode == 2, "qemu sees the corruption")
    p = skiff("check", img, check=None)
    expect(p.returncode == 2, f"skiff check corruption: {p.returncode}\n{p.stdout}{p.stderr}")
    p = skiff("check", "-r", "all", img, check=None)
    expect(p.returncode == 0, f"repair all: {p.returncode}\n{p.stdout}{p.stderr}")
    qcow2_check_clean(img)
    same_content(img, before)
    # hostile: not an image at all / truncated header
    bad = path("bad.qcow2")
    open(bad, "wb").write(b"QFI\xfb" + b"\0" * 20)
    p = skiff("check", "-f", "qcow2", bad, check=None)
    expect(p.returncode == 1 and "skiff-img:" in p.stderr, f"hostile check: {p.returncode} {p.stderr}")


def case_usage_errors(rng):
    p = skiff("create", "-f", "qcow2", path("x.qcow2"), "12Q", check=None)
    expect(p.returncode == 1 and "'12Q'" in p.stderr, f"bad size: {p.returncode} {p.stderr}")
    p = skiff("create", "-f", "qcow2", "-o", "cluster_size=3000", path("x.qcow2"), "1M", check=None)
    expect(p.returncode == 1 and "skiff-img:" in p.stderr, f"bad cluster size: {p.stderr}")
    p = skiff("create", "-f", "qcow2", "-o", "bogus=1", path("x.qcow2"), "1M", check=None)
    expect(p.returncode == 1 and "bogus" in p.stderr, f"unknown option: {p.stderr}")
    p = skiff("frobnicate", check=None)
    expect(p.returncode == 1, f"unknown command: {p.returncode}")
    a, b = path("ca.raw"), path("cb.raw")
    open(a, "wb").write(b"\0" * 1048576)
    open(b, "wb").write(b"\0" * 700001 + b"\1" + b"\0" * (1048576 - 700002))
    p = skiff("compare", a, b, check=None)
    q = qemu_img("compare", a, b, check=None)
    expect(p.returncode == 1 and q.returncode == 1, "compare differ")
    expect(p.stdout.strip() == q.stdout.strip(), f"compare message: {p.stdout} vs {q.stdout}")
    p = skiff("compare", a, path("missing.raw"), check=None)
    expect(p.returncode == 2, f"compare error exit {p.returncode}")
    # resize
    img = path("rs.qcow2")
    skiff("create", "-f", "qcow2", img, "1M")
    qemu_io(img, "write -P 9 0 64k")
    skiff("resize", img, "+3M")
    expect(info_json("qemu", img)["virtual-size"] == 4 << 20, "resize grow")
    qcow2_check_clean(img)
    p = skiff("resize", img, "1M", check=None)
    expect(p.returncode == 1 and "--shrink" in p.stderr, f"shrink refused: {p.stderr}")
    r = path("rs.raw")
    skiff("create", "-f", "raw", r, "2M")
    skiff("resize", "--shrink", r, "1M")
    expect(os.path.getsize(r) == 1 << 20, "raw shrink")


def main():
    if shutil.which("qemu-img") is None or shutil.which("qemu-io") is None:
        print("SKIP: qemu-img/qemu-io not installed (apt-get install qemu-utils)")
        return 77
    shutil.rmtree(DIR, ignore_errors=True)
    os.makedirs(DIR)
    cases = [case_plain_images_written_by_skiff, case_backing_chain, case_snapshots_both_ways,
             case_compressed, case_convert_sparse, case_qemu_written_images, case_check_agrees,
             case_usage_errors]
    only = os.environ.get("SKIFF_IMG_CASE")
    for i, case in enumerate(cases):
        if only and only not in case.__name__:
            continue
        rng = random.Random(1000 + i)
        try:
            case(rng)
            print(f"PASS {case.__name__}")
        except AssertionError as e:
            print(f"FAIL {case.__name__}: {e}")
            failures.append(case.__name__)
    print(f"{len(failures)} failed" if failures else "all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
