#include "block/qcow2/compress.h"

#include <zlib.h>
#include <zstd.h>

#include "block/qcow2/format.h"

namespace skiff::qcow2 {

namespace {

// QEMU writes raw deflate with a 4 KiB window (qcow2-threads.c: windowBits -12).
constexpr int kZlibWindowBits = -12;

Result<> inflate_cluster(std::span<const uint8_t> in, std::span<uint8_t> out) {
  z_stream s{};
  if (inflateInit2(&s, kZlibWindowBits) != Z_OK) return fail("zlib inflateInit2 failed");
  s.next_in = const_cast<Bytef*>(in.data());
  s.avail_in = static_cast<uInt>(in.size());
  s.next_out = out.data();
  s.avail_out = static_cast<uInt>(out.size());
  int ret = inflate(&s, Z_FINISH);
  const bool full = s.avail_out == 0;
  inflateEnd(&s);
  // Z_BUF_ERROR with a full output is fine: the cluster is complete and the
  // remaining input is the sector padding.
  if ((ret == Z_STREAM_END || ret == Z_BUF_ERROR || ret == Z_OK) && full) return {};
  return fail("corrupt zlib-compressed cluster (inflate returned {}, {} of {} bytes produced)", ret,
              out.size() - s.avail_out, out.size());
}

Result<> zstd_decompress_cluster(std::span<const uint8_t> in, std::span<uint8_t> out) {
  ZSTD_DCtx* ctx = ZSTD_createDCtx();
  if (!ctx) return fail("ZSTD_createDCtx failed");
  ZSTD_inBuffer ib{in.data(), in.size(), 0};
  ZSTD_outBuffer ob{out.data(), out.size(), 0};
  size_t ret = 0;
  while (ob.pos < ob.size) {
    ret = ZSTD_decompressStream(ctx, &ob, &ib);
    if (ZSTD_isError(ret)) break;
    if (ret == 0 || ib.pos == ib.size) break;  // frame done or input exhausted
  }
  ZSTD_freeDCtx(ctx);
  if (ZSTD_isError(ret)) return fail("corrupt zstd-compressed cluster: {}", ZSTD_getErrorName(ret));
  if (ob.pos != ob.size)
    return fail("zstd-compressed cluster is short ({} of {} bytes)", ob.pos, ob.size);
  return {};
}

}  // namespace

Result<> decompress_cluster(uint8_t type, std::span<const uint8_t> in, std::span<uint8_t> out) {
  switch (type) {
    case kCompressionZlib:
      return inflate_cluster(in, out);
    case kCompressionZstd:
      return zstd_decompress_cluster(in, out);
    default:
      return fail("unknown compression type {}", type);
  }
}

Result<std::vector<uint8_t>> compress_cluster(uint8_t type, std::span<const uint8_t> in) {
  std::vector<uint8_t> out;
  if (type == kCompressionZlib) {
    z_stream s{};
    if (deflateInit2(&s, Z_DEFAULT_COMPRESSION, Z_DEFLATED, kZlibWindowBits, 9,
                     Z_DEFAULT_STRATEGY) != Z_OK)
      return fail("zlib deflateInit2 failed");
    out.resize(in.size());
    s.next_in = const_cast<Bytef*>(in.data());
    s.avail_in = static_cast<uInt>(in.size());
    s.next_out = out.data();
    s.avail_out = static_cast<uInt>(out.size());
    int ret = deflate(&s, Z_FINISH);
    size_t produced = out.size() - s.avail_out;
    deflateEnd(&s);
    if (ret != Z_STREAM_END || produced >= in.size()) return std::vector<uint8_t>{};
    out.resize(produced);
    return out;
  }
  if (type == kCompressionZstd) {
    out.resize(ZSTD_compressBound(in.size()));
    size_t n = ZSTD_compress(out.data(), out.size(), in.data(), in.size(), ZSTD_CLEVEL_DEFAULT);
    if (ZSTD_isError(n)) return fail("zstd compression failed: {}", ZSTD_getErrorName(n));
    if (n >= in.size()) return std::vector<uint8_t>{};
    out.resize(n);
    return out;
  }
  return fail("unknown compression type {}", type);
}

}  // namespace skiff::qcow2
