// Header serialisation round trip: extensions (backing format, feature
// names, unknown ones) survive; refcount entry packing matches QEMU's.
#include "block/qcow2/format.h"
#include "block/qcow2/header.h"
#include "block_test_util.h"

namespace skiff::qcow2 {
namespace {

TEST(Qcow2Header, SerializeParseRoundTripPreservesUnknownExtensions) {
  Qcow2Header h;
  h.cluster_bits = 16;
  h.size = 1 << 30;
  h.l1_size = static_cast<uint32_t>(l1_entries_for(h.size, 16));
  h.l1_table_offset = 3 << 16;
  h.refcount_table_offset = 1 << 16;
  h.refcount_table_clusters = 1;
  h.backing_file = "../base image.qcow2";
  h.backing_file_offset = 1;
  h.backing_format = "qcow2";
  h.feature_names = {{0, 0, "dirty bit"}};
  h.other_extensions = {{0x12345678, {1, 2, 3}}};
  auto raw = serialize_header(h);
  ASSERT_TRUE(raw);
  raw->resize(65536);
  auto p = parse_header(*raw, 4 << 16);
  ASSERT_TRUE(p) << p.error().what();
  EXPECT_EQ(p->backing_file, h.backing_file);
  EXPECT_EQ(p->backing_format, "qcow2");
  ASSERT_EQ(p->other_extensions.size(), 1u);
  EXPECT_EQ(p->other_extensions[0].type, 0x12345678u);
  EXPECT_EQ(p->other_extensions[0].data, (std::vector<uint8_t>{1, 2, 3}));
  EXPECT_EQ(p->feature_name(0, 0), "dirty bit");
  EXPECT_EQ(p->header_length, 112u);
}

TEST(Qcow2Format, SubByteRefcountsPackFromLeastSignificantBit) {
  std::vector<uint8_t> b(8, 0);
  refcount_set(b, 0, 3, 1);
  EXPECT_EQ(b[0], 0x08);
  refcount_set(b, 1, 5, 3);
  EXPECT_EQ(b[1], 0x0c);
  refcount_set(b, 2, 5, 0xa);
  EXPECT_EQ(b[2], 0xa0);
  EXPECT_EQ(refcount_get(b, 2, 5), 0xau);
  refcount_set(b, 6, 0, 0x0102030405060708ull);
  EXPECT_EQ(b[0], 0x01);
  EXPECT_EQ(b[7], 0x08);
}

TEST(Qcow2Format, CompressedDescriptorMatchesSpecLayout) {
  // cluster_bits 16: x = 62 - 8 = 54; offset 0x12345 with 1000 bytes spans
  // sectors 0x91..0x93 -> 2 additional sectors.
  const uint64_t e = encode_compressed(0x12345, 1000, 16);
  EXPECT_EQ(e, kOflagCompressed | (2ull << 54) | 0x12345);
  const CompressedDescriptor d = decode_compressed(e, 16);
  EXPECT_EQ(d.host_offset, 0x12345u);
  EXPECT_EQ(d.max_bytes, 3 * 512 - 0x145u);
}

}  // namespace
}  // namespace skiff::qcow2
