#include "arch/x86/aml.h"

#include <gtest/gtest.h>

#include <string>

namespace skiff::x86::aml {
namespace {

// An independent PkgLength decoder written from ACPI 6.5 §20.2.4: returns
// {encoded value, bytes used}.
std::pair<uint64_t, size_t> decode_pkg_length(const Bytes& b) {
  size_t follow = b[0] >> 6;
  if (follow == 0) return {b[0] & 0x3f, 1};
  uint64_t v = b[0] & 0x0f;
  for (size_t i = 1; i <= follow; ++i) v |= uint64_t{b[i]} << (4 + 8 * (i - 1));
  return {v, follow + 1};
}

Bytes ok(const Term& t) {
  EXPECT_TRUE(t.has_value()) << (t ? "" : t.error().message);
  return t ? *t : Bytes{};
}

TEST(AmlPkgLength, UsesOneByteWhileTheTotalIsAtMost63) {
  EXPECT_EQ(ok(pkg_length(0)), Bytes{0x01});
  EXPECT_EQ(ok(pkg_length(62)), Bytes{0x3f});  // 62 + 1 = 63
}

TEST(AmlPkgLength, SwitchesToTwoBytesAt64) {
  // 63 + 1 = 64 does not fit one byte; with two bytes the total is 65:
  // lead 0b01_00_0001, then 65 >> 4 = 4.
  EXPECT_EQ(ok(pkg_length(63)), (Bytes{0x41, 0x04}));
}

TEST(AmlPkgLength, SwitchesToThreeBytesAfter4095) {
  EXPECT_EQ(ok(pkg_length(4093)), (Bytes{0x4f, 0xff}));  // 4093 + 2 = 4095
  // 4094 + 2 = 4096 needs 13 bits: three bytes, total 4097 = 0x1001.
  EXPECT_EQ(ok(pkg_length(4094)), (Bytes{0x81, 0x00, 0x01}));
}

TEST(AmlPkgLength, SwitchesToFourBytesAfter2To20Minus1) {
  EXPECT_EQ(ok(pkg_length((1u << 20) - 4)).size(), 3u);  // total 2^20 - 1
  EXPECT_EQ(ok(pkg_length((1u << 20) - 3)).size(), 4u);
}

TEST(AmlPkgLength, RejectsBodiesPast2To28) {
  EXPECT_EQ(ok(pkg_length((1u << 28) - 5)).size(), 4u);  // total 2^28 - 1
  EXPECT_FALSE(pkg_length((1u << 28) - 4));
  EXPECT_FALSE(pkg_length(UINT64_MAX));
}

TEST(AmlPkgLength, EncodedValueCountsItselfAtEveryBoundary) {
  for (uint64_t body : {0ull, 61ull, 62ull, 63ull, 64ull, 4092ull, 4093ull, 4094ull, 4095ull,
                        (1ull << 20) - 4, (1ull << 20) - 3, (1ull << 28) - 5}) {
    Bytes enc = ok(pkg_length(body));
    auto [value, used] = decode_pkg_length(enc);
    EXPECT_EQ(used, enc.size()) << body;
    EXPECT_EQ(value, body + enc.size()) << body;
  }
}

TEST(AmlNameString, PadsShortSegmentsWithUnderscores) {
  EXPECT_EQ(ok(name_string("_SB")), (Bytes{'_', 'S', 'B', '_'}));
  EXPECT_EQ(ok(name_string("\\_S5")), (Bytes{'\\', '_', 'S', '5', '_'}));
}

TEST(AmlNameString, UsesDualAndMultiNamePrefixes) {
  EXPECT_EQ(ok(name_string("\\_SB.PCI0")),
            (Bytes{'\\', 0x2e, '_', 'S', 'B', '_', 'P', 'C', 'I', '0'}));
  Bytes multi = ok(name_string("A.B.C"));
  ASSERT_EQ(multi.size(), 2u + 12u);
  EXPECT_EQ(multi[0], 0x2f);
  EXPECT_EQ(multi[1], 3);
  EXPECT_EQ(ok(name_string("^^X")), (Bytes{'^', '^', 'X', '_', '_', '_'}));
  EXPECT_EQ(ok(name_string("")), Bytes{0x00});
  EXPECT_EQ(ok(name_string("\\")), (Bytes{'\\', 0x00}));  // the root itself
}

TEST(AmlNameString, RejectsInvalidSegments) {
  EXPECT_FALSE(name_string("1ABC"));   // digit first
  EXPECT_FALSE(name_string("ABCDE"));  // five characters
  EXPECT_FALSE(name_string("pci0"));   // lower case
  EXPECT_FALSE(name_string("A..B"));   // empty segment
  EXPECT_FALSE(name_string("\\^A"));   // root and parent prefix together
}

TEST(AmlInteger, UsesTheShortestEncoding) {
  EXPECT_EQ(integer(0), Bytes{0x00});
  EXPECT_EQ(integer(1), Bytes{0x01});
  EXPECT_EQ(integer(2), (Bytes{0x0a, 0x02}));
  EXPECT_EQ(integer(0xff), (Bytes{0x0a, 0xff}));
  EXPECT_EQ(integer(0x100), (Bytes{0x0b, 0x00, 0x01}));
  EXPECT_EQ(integer(0x10000), (Bytes{0x0c, 0x00, 0x00, 0x01, 0x00}));
  EXPECT_EQ(integer(0x100000000), (Bytes{0x0e, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00}));
}

TEST(AmlEisaId, CompressesKnownIds) {
  // PNP0A08 is 0x080ad041 and PNP0501 0x0105d041 as little-endian DWords,
  // the values Linux's and other firmware's tables carry.
  EXPECT_EQ(ok(eisa_id("PNP0A08")), (Bytes{0x0c, 0x41, 0xd0, 0x0a, 0x08}));
  EXPECT_EQ(ok(eisa_id("PNP0501")), (Bytes{0x0c, 0x41, 0xd0, 0x05, 0x01}));
}

TEST(AmlEisaId, RejectsMalformedIds) {
  EXPECT_FALSE(eisa_id("pnp0a08"));
  EXPECT_FALSE(eisa_id("PNP0A0"));
  EXPECT_FALSE(eisa_id("PNP0G08"));
  EXPECT_FALSE(eisa_id("1NP0A08"));
}

TEST(AmlString, IsNulTerminatedAndRejectsControlCharacters) {
  EXPECT_EQ(ok(string("COM1")), (Bytes{0x0d, 'C', 'O', 'M', '1', 0x00}));
  EXPECT_FALSE(string(std::string("A\0B", 3)));
  EXPECT_FALSE(string("A\nB"));
}

TEST(AmlPackage, CountsElementsAfterItsLength) {
  EXPECT_EQ(ok(package({integer(1), integer(2)})), (Bytes{0x12, 0x05, 0x02, 0x01, 0x0a, 0x02}));
  TermList many(256, Term(integer(0)));
  EXPECT_FALSE(package(std::move(many)));
}

TEST(AmlName, EncodesNameOpPathAndValue) {
  EXPECT_EQ(ok(name("_UID", integer(0))), (Bytes{0x08, '_', 'U', 'I', 'D', 0x00}));
}

TEST(AmlMethod, EncodesFlagsAndBody) {
  // Method (_STA, 0, NotSerialized) { Return (0x0F) }
  EXPECT_EQ(ok(method("_STA", 0, false, {return_value(integer(0x0f))})),
            (Bytes{0x14, 0x09, '_', 'S', 'T', 'A', 0x00, 0xa4, 0x0a, 0x0f}));
  Bytes serialized = ok(method("_EVT", 1, true, {}));
  EXPECT_EQ(serialized.back(), 0x09);  // ArgCount 1 | SerializeFlag
  EXPECT_FALSE(method("_EVT", 8, false, {}));
}

TEST(AmlDevice, UsesExtOpPrefixAndGrowsItsPkgLength) {
  Bytes small = ok(device("DEV0", {}));
  EXPECT_EQ(small, (Bytes{0x5b, 0x82, 0x05, 'D', 'E', 'V', '0'}));
  // 100 bytes of body need a two-byte PkgLength.
  Bytes big = ok(device("DEV0", {buffer(Bytes(90, 0xaa))}));
  auto [len, used] = decode_pkg_length(Bytes(big.begin() + 2, big.end()));
  EXPECT_EQ(used, 2u);
  EXPECT_EQ(len, big.size() - 2);
}

TEST(AmlDevice, PassesUpTheFirstChildError) {
  auto d = device("DEV0", {name("_HID", eisa_id("bad")), name("_UID", integer(0))});
  ASSERT_FALSE(d);
  EXPECT_NE(d.error().message.find("EISA ID 'bad'"), std::string::npos);
  EXPECT_FALSE(scope("\\_SB", {device("toolong", {})}));
}

TEST(AmlResources, EncodeSmallDescriptors) {
  EXPECT_EQ(ok(io(0x3f8, 0x3f8, 0, 8)), (Bytes{0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x00, 0x08}));
  EXPECT_EQ(ok(irq_no_flags(4)), (Bytes{0x22, 0x10, 0x00}));
  EXPECT_FALSE(irq_no_flags(16));
  EXPECT_FALSE(io(0x10, 0x0f, 1, 1));
}

TEST(AmlResources, EncodeWordBusNumberAsProducerWithFixedRange) {
  EXPECT_EQ(ok(word_bus_number(Usage::kProducer, 0, 0xff)),
            (Bytes{0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x00, 0x00,
                   0x00, 0x00, 0x01}));
  Bytes wio = ok(word_io(Usage::kProducer, 0x0d00, 0xffff));
  ASSERT_EQ(wio.size(), 16u);
  EXPECT_EQ(wio[3], 0x01);  // I/O space
  EXPECT_EQ(wio[5], 0x03);  // entire range
  EXPECT_EQ(wio[14] | wio[15] << 8, 0xf300);
  EXPECT_FALSE(word_io(Usage::kProducer, 0, 0xffff));  // length 0x10000 needs 17 bits
}

TEST(AmlResources, EncodeMemoryWindowsWithInclusiveMaxAndLength) {
  Bytes d = ok(dword_memory(Usage::kProducer, Cache::kNonCacheable, 0xc0000000, 0xdfffffff));
  ASSERT_EQ(d.size(), 26u);
  EXPECT_EQ(d[0], 0x87);
  EXPECT_EQ(d[1] | d[2] << 8, 23);
  EXPECT_EQ(d[5], 0x01);  // read-write, non-cacheable
  uint32_t len = d[22] | d[23] << 8 | d[24] << 16 | uint32_t(d[25]) << 24;
  EXPECT_EQ(len, 0x20000000u);

  Bytes q = ok(qword_memory(Usage::kProducer, Cache::kCacheable, 0x100000000, 0x1ffffffff));
  ASSERT_EQ(q.size(), 46u);
  EXPECT_EQ(q[0], 0x8a);
  EXPECT_EQ(q[5], 0x03);  // read-write, cacheable
  uint64_t qlen = 0;
  for (int i = 0; i < 8; ++i) qlen |= uint64_t{q[38 + i]} << (8 * i);
  EXPECT_EQ(qlen, 0x100000000u);
  EXPECT_FALSE(qword_memory(Usage::kProducer, Cache::kCacheable, 0, UINT64_MAX));
  EXPECT_FALSE(dword_memory(Usage::kConsumer, Cache::kCacheable, 2, 1));
}

TEST(AmlResources, TemplateIsABufferEndingWithAnEndTag) {
  Bytes t = ok(resource_template({irq_no_flags(4)}));
  // BufferOp, PkgLength, BufferSize (5), IRQ (3 bytes), End Tag.
  EXPECT_EQ(t, (Bytes{0x11, 0x08, 0x0a, 0x05, 0x22, 0x10, 0x00, 0x79, 0x00}));
  EXPECT_FALSE(resource_template({irq_no_flags(99)}));
}

}  // namespace
}  // namespace skiff::x86::aml
