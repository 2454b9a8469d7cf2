// A small AML (ACPI Machine Language) encoder: just the terms skiff's DSDT
// needs. Every function returns the encoded bytes of one term, or an Error
// saying why it cannot be encoded (a bad name, a body too long for a
// PkgLength, too many package elements). Composite terms take their children
// as Terms and pass the first child error up, so a DSDT reads as one nested
// expression and is checked once at the end.
//
// References are to the ACPI Specification 6.5: §20.2 (AML grammar) and
// §6.4 (resource data types for _CRS).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace skiff::x86::aml {

using Bytes = std::vector<uint8_t>;
using Term = Result<Bytes>;
using TermList = std::vector<Term>;

// PkgLength (§20.2.4) for a construct whose body (everything after the
// PkgLength) is `body_len` bytes. The encoded value counts the PkgLength
// bytes themselves, so it is 1 to 4 bytes long; values past 2^28 - 1 fail.
[[nodiscard]] Result<Bytes> pkg_length(uint64_t body_len);

// NameString (§20.2.2): "\\_SB.PCI0", "^FOO", "_HID", "S5" (padded to
// "S5__"). Each segment is 1-4 characters: a leading A-Z or '_', then A-Z,
// 0-9 or '_'. The empty string is NullName.
[[nodiscard]] Result<Bytes> name_string(std::string_view path);

// Integer constants (§20.2.3): ZeroOp/OneOp or the shortest Byte/Word/DWord/
// QWord prefix that holds the value. Needs a DSDT revision >= 2 for values
// past 32 bits (§19.6.102: DefinitionBlock ComplianceRevision).
[[nodiscard]] Bytes integer(uint64_t value);

// A compressed EISA ID such as "PNP0A08" (§6.1.5 _HID: three upper-case
// letters and four hex digits), always as a DWordConst.
[[nodiscard]] Term eisa_id(std::string_view id);

// A String (§20.2.3): printable ASCII, NUL-terminated by the encoder.
[[nodiscard]] Term string(std::string_view s);

// DefName (§20.2.5.1): Name (path, value).
[[nodiscard]] Term name(std::string_view path, Term value);

// DefScope (§20.2.5.1) and DefDevice (§20.2.5.2).
[[nodiscard]] Term scope(std::string_view path, TermList body);
[[nodiscard]] Term device(std::string_view path, TermList body);

// DefMethod (§20.2.5.2): arg_count 0-7; serialized methods take a mutex
// around their body (§19.6.85).
[[nodiscard]] Term method(std::string_view path, uint8_t arg_count, bool serialized, TermList body);

// DefReturn (§20.2.5.3).
[[nodiscard]] Term return_value(Term value);

// DefPackage (§20.2.5.4): at most 255 elements.
[[nodiscard]] Term package(TermList elements);

// DefBuffer (§20.2.5.4) holding `data`.
[[nodiscard]] Term buffer(const Bytes& data);

// ---- Resource descriptors for ResourceTemplate (§6.4) ----

// Which way the device decodes a range (§6.4.3.5.1 general flags bit 0):
// a bridge produces the windows it forwards, a device consumes its own.
enum class Usage : uint8_t { kProducer = 0, kConsumer = 1 };

// I/O Port Descriptor (§6.4.2.5), 16-bit decode.
[[nodiscard]] Term io(uint16_t min, uint16_t max, uint8_t alignment, uint8_t length);

// IRQ Descriptor without the optional flags byte (§6.4.2.1): edge
// triggered, active high, exclusive. ISA IRQs 0-15 only.
[[nodiscard]] Term irq_no_flags(uint8_t irq);

// Word Address Space Descriptors (§6.4.3.5.3): bus numbers and I/O ranges.
// [min, max] is inclusive; the length is max - min + 1; min and max are
// fixed, positive decode.
[[nodiscard]] Term word_bus_number(Usage usage, uint16_t min, uint16_t max);
[[nodiscard]] Term word_io(Usage usage, uint16_t min, uint16_t max);

// Memory caching attribute (§6.4.3.5.1 type-specific flags _MEM).
enum class Cache : uint8_t {
  kNonCacheable = 0,
  kCacheable = 1,
  kWriteCombining = 2,
  kPrefetchable = 3
};

// DWord / QWord Address Space Descriptors (§6.4.3.5.2, §6.4.3.5.1) for a
// read-write memory range [min, max], min and max fixed, positive decode.
[[nodiscard]] Term dword_memory(Usage usage, Cache cache, uint32_t min, uint32_t max);
[[nodiscard]] Term qword_memory(Usage usage, Cache cache, uint64_t min, uint64_t max);

// ResourceTemplate (§19.3.3): a Buffer holding the descriptors followed by
// an End Tag (§6.4.2.9).
[[nodiscard]] Term resource_template(TermList descriptors);

}  // namespace skiff::x86::aml
