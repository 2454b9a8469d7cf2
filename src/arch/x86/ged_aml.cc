#include "arch/x86/ged_aml.h"

namespace skiff::x86 {
namespace {

// Opcodes not in aml.h's small encoder (ACPI 6.5 §20.3); used only here.
constexpr uint8_t kExtOpPrefix = 0x5b;
constexpr uint8_t kOpRegionOp = 0x80;  // after kExtOpPrefix
constexpr uint8_t kFieldOp = 0x81;     // after kExtOpPrefix
constexpr uint8_t kStoreOp = 0x70;
constexpr uint8_t kAndOp = 0x7b;
constexpr uint8_t kNotifyOp = 0x86;
constexpr uint8_t kIfOp = 0xa0;
constexpr uint8_t kLocal0Op = 0x60;
constexpr uint8_t kNullName = 0x00;
constexpr uint8_t kRegionSpaceSystemIo = 0x01;         // §19.6.100 RegionSpace
constexpr uint8_t kFieldByteAccNoLockPreserve = 0x01;  // §20.2.5.2 FieldFlags

void append(aml::Bytes& out, const aml::Bytes& more) {
  out.insert(out.end(), more.begin(), more.end());
}

// Op [ExtOp] PkgLength body.
aml::Term with_pkg(std::initializer_list<uint8_t> ops, const aml::Bytes& body) {
  aml::Bytes out(ops);
  append(out, SKIFF_TRY(aml::pkg_length(body.size())));
  append(out, body);
  return out;
}

// Extended Interrupt Descriptor (§6.4.3.6) for one GSI, no resource source:
// large item 0x89, length 6, flags, count 1, the DWORD interrupt number.
// Flags: bit 0 consumer, bit 1 edge (0 = level), bit 2 active low (0 = high),
// bit 3 shared (0 = exclusive).
aml::Bytes extended_interrupt_level_high(uint32_t gsi) {
  aml::Bytes d{0x89, 0x06, 0x00, 0x01, 0x01};
  for (int i = 0; i < 4; ++i) d.push_back(static_cast<uint8_t>(gsi >> (8 * i)));
  return d;
}

// OperationRegion (name, SystemIO, port, length) (§20.2.5.2 DefOpRegion).
aml::Term io_region(std::string_view name, uint16_t port, uint8_t length) {
  aml::Bytes out{kExtOpPrefix, kOpRegionOp};
  append(out, SKIFF_TRY(aml::name_string(name)));
  out.push_back(kRegionSpaceSystemIo);
  append(out, aml::integer(port));
  append(out, aml::integer(length));
  return out;
}

// Field (region, ByteAcc, NoLock, Preserve) { name, bits } (§20.2.5.2
// DefField; a NamedField is a NameSeg and a PkgLength holding the bit width).
aml::Term byte_field(std::string_view region, std::string_view name, uint8_t bits) {
  aml::Bytes body = SKIFF_TRY(aml::name_string(region));
  body.push_back(kFieldByteAccNoLockPreserve);
  append(body, SKIFF_TRY(aml::name_string(name)));
  append(body, SKIFF_TRY(aml::pkg_length(bits - 1)));  // PkgLength counts itself: value == bits
  return with_pkg({kExtOpPrefix, kFieldOp}, body);
}

// _EVT: Local0 = GDAT; If (Local0 & bit) { Notify (\_SB.PWRB, 0x80) }.
aml::Term evt_method(uint8_t power_button_bit) {
  aml::Bytes store{kStoreOp};
  append(store, SKIFF_TRY(aml::name_string("GDAT")));
  store.push_back(kLocal0Op);

  aml::Bytes predicate{kAndOp, kLocal0Op};
  append(predicate, aml::integer(power_button_bit));
  predicate.push_back(kNullName);  // no Target
  aml::Bytes notify{kNotifyOp};
  append(notify, SKIFF_TRY(aml::name_string("\\_SB.PWRB")));
  append(notify, aml::integer(0x80));
  aml::Bytes if_body = predicate;
  append(if_body, notify);
  aml::Term if_term = with_pkg({kIfOp}, if_body);
  return aml::method("_EVT", 1, true, {store, std::move(if_term)});
}

}  // namespace

aml::Term ged_device(const GedAmlConfig& c) {
  if (c.power_button_bit == 0) return fail("GED: the power-button event bit must be non-zero");
  return aml::device(
      "GED0", {
                  aml::name("_HID", aml::string("ACPI0013")),
                  aml::name("_UID", aml::integer(0)),
                  aml::name("_CRS", aml::resource_template({extended_interrupt_level_high(c.gsi)})),
                  io_region("GDST", c.port, 1),
                  byte_field("GDST", "GDAT", 8),
                  evt_method(c.power_button_bit),
              });
}

}  // namespace skiff::x86
