// skiff-img create, convert and compare. Convert and compare walk the source
// with block_status, so unallocated and zero ranges are skipped rather than
// read (sparse output, fast compares).
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <vector>

#include "block/open_image.h"
#include "block/qcow2/create.h"
#include "block/qcow2/qcow2_image.h"
#include "block/raw_image.h"
#include "cli/kv_options.h"
#include "cli/skiff_img/commands.h"
#include "cli/skiff_img/image_access.h"

namespace skiff::img {
namespace {

std::string join_options(const std::vector<std::string>& opts) {
  std::string s;
  for (const auto& o : opts) {
    if (o.empty()) continue;
    if (!s.empty()) s += ',';
    s += o;
  }
  return s;
}

struct NewImage {
  std::string format;
  uint64_t size = 0;
  qcow2::CreateOptions qcow2;
  bool raw_full = false;
};

// Parses -o (and -b/-F) into creation options; errors name the bad value.
Result<NewImage> parse_create_options(const std::string& format, const std::string& opts,
                                      const std::string& backing, const std::string& backing_fmt) {
  NewImage n;
  n.format = format;
  cli::KvMap kv;
  if (!opts.empty())
    kv = SKIFF_TRY(
        cli::parse_kv("-o", opts,
                      {"cluster_size", "backing_file", "backing_fmt", "compression_type",
                       "preallocation", "lazy_refcounts", "refcount_bits", "compat", "size"}));
  auto& q = n.qcow2;
  if (format == "raw") {
    for (const auto& [k, v] : kv) {
      if (k == "preallocation") {
        if (v != "off" && v != "full" && v != "falloc")
          return fail("invalid preallocation '{}' for raw (expected off, falloc or full)", v);
        n.raw_full = v != "off";
      } else if (k != "size") {
        return fail("format raw does not support option '{}'", k);
      }
    }
    if (!backing.empty()) return fail("format raw does not support backing files");
  }
  for (const auto& [k, v] : kv) {
    if (k == "cluster_size") {
      q.cluster_size = SKIFF_TRY(parse_image_size(v));
    } else if (k == "backing_file") {
      q.backing_file = v;
    } else if (k == "backing_fmt") {
      q.backing_format = v;
    } else if (k == "compression_type") {
      if (v != "zlib" && v != "zstd")
        return fail("invalid compression_type '{}' (expected zlib or zstd)", v);
      q.compression_type = v == "zstd" ? qcow2::kCompressionZstd : qcow2::kCompressionZlib;
    } else if (k == "preallocation") {
      if (format == "qcow2") q.preallocation = SKIFF_TRY(qcow2::parse_preallocation(v));
    } else if (k == "lazy_refcounts") {
      q.lazy_refcounts = SKIFF_TRY(cli::parse_switch("lazy_refcounts", v));
    } else if (k == "refcount_bits") {
      q.refcount_bits =
          static_cast<uint32_t>(SKIFF_TRY(cli::parse_uint("refcount_bits", v, 1, 64)));
    } else if (k == "compat") {
      if (v == "0.10" || v == "v2")
        q.version = 2;
      else if (v == "1.1" || v == "v3")
        q.version = 3;
      else
        return fail("invalid compat '{}' (expected 0.10 or 1.1)", v);
    } else if (k == "size") {
      n.size = SKIFF_TRY(parse_image_size(v));
    }
  }
  if (!backing.empty()) q.backing_file = backing;
  if (!backing_fmt.empty()) q.backing_format = backing_fmt;
  if (!q.backing_format.empty() && q.backing_format != "raw" && q.backing_format != "qcow2")
    return fail("invalid backing format '{}' (expected raw or qcow2)", q.backing_format);
  return n;
}

Result<> create_image(const std::string& path, NewImage n) {
  if (n.format == "raw") {
    SKIFF_TRY_VOID(RawImage::create(path, n.size));
    if (n.raw_full && n.size) {
      auto f = SKIFF_TRY(HostFile::open(path, false));
      SKIFF_TRY_VOID(f.allocate(0, n.size));
    }
    return {};
  }
  n.qcow2.size = n.size;
  return qcow2::create(path, n.qcow2);
}

int fail_with_report(const Error& e) {
  report(e);
  return 1;
}

}  // namespace

int cmd_create(const CreateArgs& a) {
  auto n = parse_create_options(a.format, join_options(a.options), a.backing, a.backing_format);
  if (!n) return fail_with_report(n.error());
  if (!a.size.empty()) {
    auto s = parse_image_size(a.size);
    if (!s) return fail_with_report(s.error());
    n->size = *s;
  } else if (!n->qcow2.backing_file.empty() && n->size == 0) {
    // As qemu-img: without SIZE the new overlay is as large as its backing file.
    auto b =
        open_disk(resolve_backing(a.file, n->qcow2.backing_file), n->qcow2.backing_format, true);
    if (!b) return fail_with_report(b.error());
    n->size = (*b)->size();
  } else if (n->size == 0 && a.size.empty()) {
    report("create: SIZE is required when there is no backing file");
    return 1;
  }
  std::printf("Formatting '%s', fmt=%s size=%llu\n", a.file.c_str(), a.format.c_str(),
              static_cast<unsigned long long>(n->size));
  if (auto r = create_image(a.file, *n); !r) return fail_with_report(r.error());
  return 0;
}

int cmd_convert(const ConvertArgs& a) {
  auto src = open_disk(a.src, a.src_format, true);
  if (!src) return fail_with_report(src.error());
  DiskImage& s = **src;
  auto n = parse_create_options(a.dst_format, join_options(a.options), "", "");
  if (!n) return fail_with_report(n.error());
  if (a.compress && a.dst_format != "qcow2") {
    report("convert: -c needs -O qcow2");
    return 1;
  }
  if (!n->qcow2.backing_file.empty()) {
    report("convert: a backing file for the target is not supported");
    return 1;
  }
  n->size = s.size();
  if (auto r = create_image(a.dst, *n); !r) return fail_with_report(r.error());
  auto dst = open_disk(a.dst, a.dst_format, false);
  if (!dst) return fail_with_report(dst.error());
  DiskImage& d = **dst;
  auto* q = dynamic_cast<Qcow2Image*>(&d);
  const bool progress = a.progress && isatty(STDERR_FILENO);

  // Chunks of whole target clusters, so compressed writes get full clusters.
  const uint64_t cs = q ? q->cluster_size() : 65536;
  const uint64_t chunk = a.compress ? cs : std::max<uint64_t>(kCopyChunk / cs, 1) * cs;
  std::vector<uint8_t> buf(chunk);
  int last_pct = -1;
  for (uint64_t off = 0; off < s.size();) {
    uint64_t len = std::min(chunk - off % chunk, s.size() - off);
    auto st = s.block_status(off, len);
    if (!st) return fail_with_report(st.error());
    uint64_t run = std::min<uint64_t>(std::max<uint64_t>(st->length, 1), len);
    // The target is new and reads as zeroes: only data needs copying.
    if (st->data || !st->zero) {
      std::span<uint8_t> b(buf.data(), run);
      if (auto r = s.read(off, b); !r) return fail_with_report(r.error());
      // Zero detection per target cluster keeps the output sparse; runs of
      // non-zero clusters go out as one write.
      uint64_t pos = 0;
      while (pos < run) {
        uint64_t piece = std::min(cs - (off + pos) % cs, run - pos);
        if (all_zero(b.data() + pos, piece)) {
          pos += piece;
          continue;
        }
        uint64_t span_len = piece;
        while (!a.compress && pos + span_len < run) {
          uint64_t next = std::min(cs, run - pos - span_len);
          if (all_zero(b.data() + pos + span_len, next)) break;
          span_len += next;
        }
        Result<> w;
        if (a.compress && (off + pos) % cs == 0 && span_len == std::min(cs, s.size() - off - pos))
          w = q->write_compressed((off + pos) / cs, b.subspan(pos, span_len));
        else
          w = d.write(off + pos, b.subspan(pos, span_len));
        if (!w) return fail_with_report(w.error());
        pos += span_len;
      }
    }
    off += run;
    if (progress) {
      int pct = static_cast<int>(off * 10000 / s.size());
      if (pct != last_pct) {
        std::fprintf(stderr, "    (%.2f/100%%)\r", pct / 100.0);
        last_pct = pct;
      }
    }
  }
  if (progress) std::fprintf(stderr, "    (100.00/100%%)\n");
  if (auto r = d.flush(); !r) return fail_with_report(r.error());
  return 0;
}

int cmd_compare(const CompareArgs& a) {
  auto ia = open_disk(a.a, a.format_a, true);
  if (!ia) {
    report(ia.error());
    return 2;
  }
  auto ib = open_disk(a.b, a.format_b, true);
  if (!ib) {
    report(ib.error());
    return 2;
  }
  DiskImage& x = **ia;
  DiskImage& y = **ib;
  if (x.size() != y.size()) std::printf("Warning: Image size mismatch!\n");
  const uint64_t end = std::max(x.size(), y.size());
  std::vector<uint8_t> bx(kCopyChunk), by(kCopyChunk);
  // Reads [off, off+len) of an image, zeroes past its end.
  auto read = [](DiskImage& img, uint64_t off, std::span<uint8_t> out) -> Result<> {
    std::fill(out.begin(), out.end(), 0);
    if (off >= img.size()) return {};
    uint64_t n = std::min<uint64_t>(out.size(), img.size() - off);
    return img.read(off, out.first(n));
  };
  auto zero_run = [](DiskImage& img, uint64_t off, uint64_t len) -> Result<uint64_t> {
    if (off >= img.size()) return len;
    auto st = SKIFF_TRY(img.block_status(off, std::min(len, img.size() - off)));
    return st.zero && !st.data ? std::min(st.length, len) : 0;
  };
  for (uint64_t off = 0; off < end;) {
    uint64_t len = std::min<uint64_t>(kCopyChunk - off % kCopyChunk, end - off);
    auto zx = zero_run(x, off, len);
    auto zy = zero_run(y, off, len);
    if (!zx || !zy) {
      report(!zx ? zx.error() : zy.error());
      return 2;
    }
    uint64_t both = std::min(*zx, *zy);
    if (both > 0) {
      off += both;
      continue;
    }
    auto rx = read(x, off, std::span(bx.data(), len));
    auto ry = read(y, off, std::span(by.data(), len));
    if (!rx || !ry) {
      report(!rx ? rx.error() : ry.error());
      return 2;
    }
    if (std::memcmp(bx.data(), by.data(), len) != 0) {
      uint64_t i = 0;
      while (bx[i] == by[i]) ++i;
      // qemu-img reports the start of the first differing 512-byte sector.
      std::printf("Content mismatch at offset %llu!\n",
                  static_cast<unsigned long long>((off + i) / 512 * 512));
      return 1;
    }
    off += len;
  }
  std::printf("Images are identical.\n");
  return 0;
}

}  // namespace skiff::img
