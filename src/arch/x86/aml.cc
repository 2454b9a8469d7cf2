#include "arch/x86/aml.h"

#include <cstddef>

namespace skiff::x86::aml {
namespace {

// Opcodes, ACPI 6.5 §20.3 (AML byte stream byte values).
constexpr uint8_t kZeroOp = 0x00;
constexpr uint8_t kOneOp = 0x01;
constexpr uint8_t kNameOp = 0x08;
constexpr uint8_t kBytePrefix = 0x0a;
constexpr uint8_t kWordPrefix = 0x0b;
constexpr uint8_t kDWordPrefix = 0x0c;
constexpr uint8_t kStringPrefix = 0x0d;
constexpr uint8_t kQWordPrefix = 0x0e;
constexpr uint8_t kScopeOp = 0x10;
constexpr uint8_t kBufferOp = 0x11;
constexpr uint8_t kPackageOp = 0x12;
constexpr uint8_t kMethodOp = 0x14;
constexpr uint8_t kDualNamePrefix = 0x2e;
constexpr uint8_t kMultiNamePrefix = 0x2f;
constexpr uint8_t kExtOpPrefix = 0x5b;
constexpr uint8_t kDeviceOp = 0x82;  // after kExtOpPrefix
constexpr uint8_t kRootChar = '\\';
constexpr uint8_t kParentPrefixChar = '^';
constexpr uint8_t kReturnOp = 0xa4;

// §20.2.4: a 1-byte PkgLength holds 0-63; the 2-, 3- and 4-byte forms hold
// 12, 20 and 28 bits.
constexpr uint64_t kMaxPkgLength = (uint64_t{1} << 28) - 1;

void append(Bytes& out, const Bytes& more) {
  out.insert(out.end(), more.begin(), more.end());
}

void append_le(Bytes& out, uint64_t value, size_t bytes) {
  for (size_t i = 0; i < bytes; ++i) out.push_back(static_cast<uint8_t>(value >> (8 * i)));
}

bool is_lead_name_char(char c) {
  return (c >= 'A' && c <= 'Z') || c == '_';
}
bool is_name_char(char c) {
  return is_lead_name_char(c) || (c >= '0' && c <= '9');
}

// NameSeg (§20.2.2): four characters, short names padded with '_'.
Result<Bytes> name_seg(std::string_view seg, std::string_view path) {
  if (seg.empty() || seg.size() > 4)
    return fail("AML name '{}': segment '{}' must be 1-4 characters", path, seg);
  if (!is_lead_name_char(seg[0]))
    return fail("AML name '{}': segment '{}' must start with A-Z or '_'", path, seg);
  Bytes out;
  for (char c : seg) {
    if (!is_name_char(c)) return fail("AML name '{}': invalid character in '{}'", path, seg);
    out.push_back(static_cast<uint8_t>(c));
  }
  while (out.size() < 4) out.push_back('_');
  return out;
}

// Joins the encoded children of a composite term, passing up the first error.
Result<Bytes> join(TermList& terms) {
  Bytes out;
  for (auto& t : terms) {
    if (!t) return std::unexpected(std::move(t.error()));
    append(out, *t);
  }
  return out;
}

// Op [ExtOp] PkgLength body: the shape of every "package" construct.
Term with_pkg_length(std::initializer_list<uint8_t> ops, const Bytes& body) {
  Bytes out(ops);
  append(out, SKIFF_TRY(pkg_length(body.size())));
  append(out, body);
  return out;
}

Result<uint64_t> range_length(uint64_t min, uint64_t max, uint64_t field_max, const char* what) {
  if (min > max) return fail("AML {}: min {:#x} is above max {:#x}", what, min, max);
  uint64_t len = max - min;
  if (len >= field_max) return fail("AML {}: range {:#x}-{:#x} is too long", what, min, max);
  return len + 1;
}

// General flags of an address space descriptor (§6.4.3.5.1 byte 4):
// _MAF (bit 3) and _MIF (bit 2) set, positive decode (bit 1 clear).
uint8_t address_space_flags(Usage usage) {
  return static_cast<uint8_t>((1u << 3) | (1u << 2) | static_cast<uint8_t>(usage));
}

// Address space resource types (§6.4.3.5.1 byte 3).
constexpr uint8_t kSpaceMemory = 0;
constexpr uint8_t kSpaceIo = 1;
constexpr uint8_t kSpaceBusNumber = 2;

// Large resource item header (§6.4.3): tag byte, then a 16-bit length of
// the data that follows it.
Bytes large_item(uint8_t tag, uint16_t data_len) {
  Bytes out{tag};
  append_le(out, data_len, 2);
  return out;
}

// Word, DWord and QWord Address Space Descriptors (§6.4.3.5.1-3) share one
// layout: type, general flags, type-specific flags, then granularity, min,
// max, translation offset and length, each `width` bytes.
Term address_space(uint8_t tag, size_t width, uint8_t type, uint8_t type_flags, Usage usage,
                   uint64_t min, uint64_t max, const char* what) {
  uint64_t field_max = width == 8 ? UINT64_MAX : (uint64_t{1} << (8 * width)) - 1;
  uint64_t len = SKIFF_TRY(range_length(min, max, field_max, what));
  Bytes out = large_item(tag, static_cast<uint16_t>(3 + 5 * width));
  out.push_back(type);
  out.push_back(address_space_flags(usage));
  out.push_back(type_flags);
  append_le(out, 0, width);  // _GRA: 0, the range is fixed (min and max fixed)
  append_le(out, min, width);
  append_le(out, max, width);
  append_le(out, 0, width);  // _TRA: no translation
  append_le(out, len, width);
  return out;
}

// Memory type-specific flags (§6.4.3.5.1 byte 5): read-write (bit 0),
// caching in bits 2:1, AddressRangeMemory (bits 4:3 = 0).
uint8_t memory_flags(Cache cache) {
  return static_cast<uint8_t>(1u | (static_cast<uint8_t>(cache) << 1));
}

}  // namespace

Result<Bytes> pkg_length(uint64_t body_len) {
  if (body_len > kMaxPkgLength)
    return fail("AML PkgLength: a body of {} bytes exceeds the 2^28-byte limit", body_len);
  for (size_t n = 1; n <= 4; ++n) {
    uint64_t total = body_len + n;
    // Bits a PkgLength of n bytes can hold: 6 for one byte, else 4 + 8 per
    // following byte.
    uint64_t limit = n == 1 ? 63 : (uint64_t{1} << (4 + 8 * (n - 1))) - 1;
    if (total > limit) continue;
    if (n == 1) return Bytes{static_cast<uint8_t>(total)};
    // Lead byte: bits 7-6 count the following bytes, bits 3-0 are the low
    // nibble of the length; each following byte holds the next 8 bits.
    Bytes out{static_cast<uint8_t>(((n - 1) << 6) | (total & 0xf))};
    append_le(out, total >> 4, n - 1);
    return out;
  }
  return fail("AML PkgLength: a body of {} bytes exceeds the 2^28-byte limit", body_len);
}

Result<Bytes> name_string(std::string_view path) {
  std::string_view orig = path;
  Bytes out;
  if (!path.empty() && path[0] == '\\') {
    out.push_back(kRootChar);
    path.remove_prefix(1);
  } else {
    while (!path.empty() && path[0] == '^') {
      out.push_back(kParentPrefixChar);
      path.remove_prefix(1);
    }
  }
  if (path.empty()) {
    out.push_back(0x00);  // NullName
    return out;
  }
  std::vector<std::string_view> segs;
  for (size_t start = 0;;) {
    size_t dot = path.find('.', start);
    segs.push_back(path.substr(start, dot == std::string_view::npos ? dot : dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  if (segs.size() > 255) return fail("AML name '{}': more than 255 segments", orig);
  if (segs.size() == 2) out.push_back(kDualNamePrefix);
  if (segs.size() > 2) {
    out.push_back(kMultiNamePrefix);
    out.push_back(static_cast<uint8_t>(segs.size()));
  }
  for (auto seg : segs) append(out, SKIFF_TRY(name_seg(seg, orig)));
  return out;
}

Bytes integer(uint64_t value) {
  if (value == 0) return {kZeroOp};
  if (value == 1) return {kOneOp};
  Bytes out;
  if (value <= 0xff) {
    out.push_back(kBytePrefix);
    append_le(out, value, 1);
  } else if (value <= 0xffff) {
    out.push_back(kWordPrefix);
    append_le(out, value, 2);
  } else if (value <= 0xffffffff) {
    out.push_back(kDWordPrefix);
    append_le(out, value, 4);
  } else {
    out.push_back(kQWordPrefix);
    append_le(out, value, 8);
  }
  return out;
}

Term eisa_id(std::string_view id) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  if (id.size() != 7) return fail("EISA ID '{}' must be 7 characters", id);
  uint32_t v = 0;
  for (size_t i = 0; i < 3; ++i) {
    if (id[i] < 'A' || id[i] > 'Z') return fail("EISA ID '{}': needs 3 letters first", id);
    v = (v << 5) | static_cast<uint32_t>(id[i] - '@');  // 'A' = 1
  }
  for (size_t i = 3; i < 7; ++i) {
    int h = hex(id[i]);
    if (h < 0) return fail("EISA ID '{}': needs 4 upper-case hex digits last", id);
    v = (v << 4) | static_cast<uint32_t>(h);
  }
  // v is 31 bits: 15 of letters, 16 of product number. The compressed ID is
  // these bits stored big-endian in a DWord (§6.1.5 and the PnP ISA spec).
  Bytes out{kDWordPrefix};
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
  return out;
}

Term string(std::string_view s) {
  Bytes out{kStringPrefix};
  for (char c : s) {
    // §20.2.3: AsciiCharList is 0x01-0x7F; restrict to printable ASCII.
    if (c < 0x20 || c > 0x7e) return fail("AML string '{}': non-printable character", s);
    out.push_back(static_cast<uint8_t>(c));
  }
  out.push_back(0);
  return out;
}

Term name(std::string_view path, Term value) {
  Bytes out{kNameOp};
  append(out, SKIFF_TRY(name_string(path)));
  append(out, SKIFF_TRY(std::move(value)));
  return out;
}

Term scope(std::string_view path, TermList body) {
  Bytes inner = SKIFF_TRY(name_string(path));
  append(inner, SKIFF_TRY(join(body)));
  return with_pkg_length({kScopeOp}, inner);
}

Term device(std::string_view path, TermList body) {
  Bytes inner = SKIFF_TRY(name_string(path));
  append(inner, SKIFF_TRY(join(body)));
  return with_pkg_length({kExtOpPrefix, kDeviceOp}, inner);
}

Term method(std::string_view path, uint8_t arg_count, bool serialized, TermList body) {
  if (arg_count > 7) return fail("AML method '{}': {} arguments (at most 7)", path, arg_count);
  Bytes inner = SKIFF_TRY(name_string(path));
  // MethodFlags (§20.2.5.2): bits 2-0 ArgCount, bit 3 SerializeFlag,
  // bits 7-4 SyncLevel (0).
  inner.push_back(static_cast<uint8_t>(arg_count | (serialized ? 0x08 : 0)));
  append(inner, SKIFF_TRY(join(body)));
  return with_pkg_length({kMethodOp}, inner);
}

Term return_value(Term value) {
  Bytes out{kReturnOp};
  append(out, SKIFF_TRY(std::move(value)));
  return out;
}

Term package(TermList elements) {
  if (elements.size() > 255)
    return fail("AML package: {} elements (at most 255 without VarPackage)", elements.size());
  Bytes inner{static_cast<uint8_t>(elements.size())};  // NumElements
  append(inner, SKIFF_TRY(join(elements)));
  return with_pkg_length({kPackageOp}, inner);
}

Term buffer(const Bytes& data) {
  Bytes inner = integer(data.size());  // BufferSize
  append(inner, data);
  return with_pkg_length({kBufferOp}, inner);
}

Term io(uint16_t min, uint16_t max, uint8_t alignment, uint8_t length) {
  if (min > max) return fail("AML IO: min {:#x} is above max {:#x}", min, max);
  // Small item 0x08, length 7 (§6.4.2.5); byte 1 bit 0: 16-bit decode.
  Bytes out{0x47, 0x01};
  append_le(out, min, 2);
  append_le(out, max, 2);
  out.push_back(alignment);
  out.push_back(length);
  return out;
}

Term irq_no_flags(uint8_t irq) {
  if (irq > 15) return fail("AML IRQ: {} is not an ISA IRQ (0-15)", irq);
  // Small item 0x04, length 2 (§6.4.2.1): a 16-bit mask of IRQs.
  Bytes out{0x22};
  append_le(out, uint64_t{1} << irq, 2);
  return out;
}

Term word_bus_number(Usage usage, uint16_t min, uint16_t max) {
  return address_space(0x88, 2, kSpaceBusNumber, 0, usage, min, max, "WordBusNumber");
}

Term word_io(Usage usage, uint16_t min, uint16_t max) {
  // I/O type-specific flags (§6.4.3.5.1 byte 5): _RNG = 3, entire range
  // (ISA and non-ISA addresses).
  return address_space(0x88, 2, kSpaceIo, 0x03, usage, min, max, "WordIO");
}

Term dword_memory(Usage usage, Cache cache, uint32_t min, uint32_t max) {
  return address_space(0x87, 4, kSpaceMemory, memory_flags(cache), usage, min, max, "DWordMemory");
}

Term qword_memory(Usage usage, Cache cache, uint64_t min, uint64_t max) {
  return address_space(0x8a, 8, kSpaceMemory, memory_flags(cache), usage, min, max, "QWordMemory");
}

Term resource_template(TermList descriptors) {
  Bytes data = SKIFF_TRY(join(descriptors));
  // End Tag (§6.4.2.9): small item 0x0F, length 1; a checksum byte of 0
  // means "the descriptors are correct" (no checksum).
  data.push_back(0x79);
  data.push_back(0x00);
  return buffer(data);
}

}  // namespace skiff::x86::aml
