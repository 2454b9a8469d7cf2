// skiff-img resize, rebase and commit: changes to an existing image through
// the block library (Qcow2Image's metadata calls for the header changes).
#include <cstdio>
#include <cstring>
#include <vector>

#include "block/open_image.h"
#include "block/qcow2/qcow2_image.h"
#include "block/raw_image.h"
#include "block/tools/qcow2_metadata.h"
#include "cli/skiff_img/commands.h"
#include "cli/skiff_img/image_access.h"

namespace skiff::img {
namespace {

int fail_with_report(const Error& e) {
  report(e);
  return 1;
}

// Reads [off, off+out.size()) of img, zeroes past its end (or when img is null).
Result<> read_padded(DiskImage* img, uint64_t off, std::span<uint8_t> out) {
  std::fill(out.begin(), out.end(), 0);
  if (!img || off >= img->size()) return {};
  uint64_t n = std::min<uint64_t>(out.size(), img->size() - off);
  return img->read(off, out.first(n));
}

}  // namespace

int cmd_resize(const ResizeArgs& a) {
  auto img = open_disk(a.file, a.format, false);
  if (!img) return fail_with_report(img.error());
  DiskImage& d = **img;
  std::string text = a.size;
  int sign = 0;
  if (!text.empty() && (text[0] == '+' || text[0] == '-')) {
    sign = text[0] == '+' ? 1 : -1;
    text.erase(0, 1);
  }
  auto v = parse_image_size(text);
  if (!v) return fail_with_report(v.error());
  uint64_t size = *v;
  if (sign > 0) size = d.size() + *v;
  if (sign < 0) {
    if (*v > d.size()) {
      report(fmt::format("invalid size '{}': the image would shrink below zero", a.size));
      return 1;
    }
    size = d.size() - *v;
  }
  if (size < d.size() && !a.shrink) {
    report("Use the --shrink option to perform a shrink operation.");
    return 1;
  }
  Result<> r;
  if (auto* q = dynamic_cast<Qcow2Image*>(&d)) {
    if (size < d.size()) {
      report(fmt::format("{}: shrinking qcow2 images is not supported", a.file));
      return 1;
    }
    r = q->resize(size);
  } else if (auto* raw = dynamic_cast<RawImage*>(&d)) {
    r = raw->resize(size);
  } else {
    r = fail("{}: resize not supported for format {}", a.file, d.format());
  }
  if (r) r = d.flush();
  if (!r) return fail_with_report(r.error());
  std::printf("Image resized.\n");
  return 0;
}

int cmd_rebase(const RebaseArgs& a) {
  auto img = open_disk(a.file, a.format, false, !a.unsafe);
  if (!img) return fail_with_report(img.error());
  auto* q = dynamic_cast<Qcow2Image*>(img->get());
  if (!q) {
    report(fmt::format("{}: only qcow2 images have a backing file", a.file));
    return 1;
  }
  std::string fmt_name = a.backing_format;
  if (!a.backing.empty() && fmt_name.empty()) {
    auto p = probe_format(resolve_backing(a.file, a.backing));
    if (!p) return fail_with_report(p.error());
    fmt_name = *p;
  }
  if (!a.unsafe) {
    // Safe mode: wherever the overlay does not hold the data itself, copy
    // the old backing content in if the new backing file reads differently.
    std::unique_ptr<DiskImage> nb;
    if (!a.backing.empty()) {
      auto o = open_disk(resolve_backing(a.file, a.backing), fmt_name, true);
      if (!o) return fail_with_report(o.error());
      nb = std::move(*o);
    }
    std::vector<uint8_t> old_buf(kCopyChunk), new_buf(kCopyChunk);
    for (uint64_t off = 0; off < q->size();) {
      uint64_t len = std::min<uint64_t>(kCopyChunk - off % kCopyChunk, q->size() - off);
      auto st = q->block_status(off, len);
      if (!st) return fail_with_report(st.error());
      uint64_t run = std::min<uint64_t>(std::max<uint64_t>(st->length, 1), len);
      if (st->depth != 0 || !(st->allocated || st->data || st->zero)) {
        auto o = std::span(old_buf.data(), run);
        auto n = std::span(new_buf.data(), run);
        if (auto r = q->read(off, o); !r) return fail_with_report(r.error());
        if (auto r = read_padded(nb.get(), off, n); !r) return fail_with_report(r.error());
        if (std::memcmp(o.data(), n.data(), run) != 0)
          if (auto r = q->write(off, o); !r) return fail_with_report(r.error());
      }
      off += run;
    }
    if (auto r = q->flush(); !r) return fail_with_report(r.error());
  }
  if (auto r = q->set_backing_file(a.backing, a.backing.empty() ? "" : fmt_name); !r)
    return fail_with_report(r.error());
  if (auto r = q->flush(); !r) return fail_with_report(r.error());
  return 0;
}

int cmd_commit(const CommitArgs& a) {
  auto img = open_disk(a.file, a.format, false);
  if (!img) return fail_with_report(img.error());
  auto* q = dynamic_cast<Qcow2Image*>(img->get());
  if (!q || q->header().backing_file.empty()) {
    report(fmt::format("{}: image has no backing file to commit into", a.file));
    return 1;
  }
  auto hdr = q->header();
  auto base =
      open_disk(resolve_backing(a.file, hdr.backing_file), hdr.backing_format.value_or(""), false);
  if (!base) return fail_with_report(base.error());
  DiskImage& b = **base;
  std::vector<uint8_t> buf(kCopyChunk);
  for (uint64_t off = 0; off < q->size();) {
    uint64_t len = std::min<uint64_t>(kCopyChunk - off % kCopyChunk, q->size() - off);
    auto st = q->block_status(off, len);
    if (!st) return fail_with_report(st.error());
    uint64_t run = std::min<uint64_t>(std::max<uint64_t>(st->length, 1), len);
    if (st->depth == 0 && (st->allocated || st->data || st->zero)) {
      if (off + run > b.size()) {
        report(fmt::format("{}: backing file is smaller than the overlay's data", a.file));
        return 1;
      }
      auto s = std::span(buf.data(), run);
      if (auto r = q->read(off, s); !r) return fail_with_report(r.error());
      if (auto r = b.write(off, s); !r) return fail_with_report(r.error());
    }
    off += run;
  }
  if (auto r = b.flush(); !r) return fail_with_report(r.error());
  // As qemu-img commit (without -d): the overlay is emptied, so it reads
  // through to the backing file that now holds its data. The backing file is
  // flushed first: a crash before this point leaves both readable.
  if (auto r = q->make_empty(); !r) return fail_with_report(r.error());
  if (auto r = q->flush(); !r) return fail_with_report(r.error());
  std::printf("Image committed.\n");
  return 0;
}

}  // namespace skiff::img
