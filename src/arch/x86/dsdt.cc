// The DSDT's AML: the system state package for power-off and the devices
// the guest cannot discover on its own (ACPI 6.5 §5.2.11.1, §6.1 device
// identification, §6.2 _CRS).
#include "arch/x86/acpi.h"
#include "arch/x86/layout.h"
#include "arch/x86/pci_irq.h"

namespace skiff::x86 {
namespace {

using aml::Cache;
using aml::Usage;

// \_S5_ (ACPI 6.5 §7.4.2): SLP_TYPa, SLP_TYPb and two reserved values. On a
// HW-reduced platform the guest writes SLP_TYPa << 2 | SLP_EN to
// SLEEP_CONTROL_REG (§4.8.3.7); the power device in the vmm expects
// kAcpiS5SleepType.
aml::Term s5_package() {
  return aml::name("\\_S5", aml::package({aml::integer(kAcpiS5SleepType), aml::integer(0),
                                          aml::integer(0), aml::integer(0)}));
}

// _PRT (ACPI 6.5 §6.2.13): where each slot's INTA#-INTD# goes. Every entry
// is Package {Address (slot << 16 | 0xffff: any function), Pin (0 = INTA#),
// Source 0, Source Index = the GSI}: a Source of 0 means the pin is wired to
// that GSI directly (no link device); the OS then treats it as PCI INTx#,
// level triggered, active low (see pci_irq.h). The GSI
// is pci_intx_gsi(), the same function the vmm asserts INTx through.
aml::Term pci_routing_table() {
  aml::TermList entries;
  for (uint8_t slot = 0; slot < kPciSlots; ++slot)
    for (uint8_t pin = 0; pin < kPciIntxPins; ++pin)
      entries.push_back(
          aml::package({aml::integer((uint64_t{slot} << 16) | 0xffff), aml::integer(pin),
                        aml::integer(0), aml::integer(pci_intx_gsi(slot, pin))}));
  return aml::name("_PRT", aml::package(std::move(entries)));
}

// The PCI Express host bridge (§6.1.5: PNP0A08, compatible with PCI's
// PNP0A03) and the resources it forwards to bus 0 (PCI Firmware spec 3.3
// §4.1.2): the bus range, all I/O ports except its own config ports
// 0xcf8-0xcff (which it consumes), and the MMIO windows.
aml::Term pci_host_bridge(const AcpiConfig& c) {
  aml::TermList resources{
      aml::word_bus_number(Usage::kProducer, 0, 0),
      aml::io(kPortPciConfigAddr, kPortPciConfigAddr, 1, 8),
      aml::word_io(Usage::kProducer, 0x0000, 0x0cf7),  // below kPortPciConfigAddr
      aml::word_io(Usage::kProducer, 0x0d00, 0xffff),  // above kPortPciConfigData + 3
      aml::dword_memory(Usage::kProducer, Cache::kNonCacheable,
                        static_cast<uint32_t>(kPciMmio32Start),
                        static_cast<uint32_t>(kPciMmio32End - 1)),
  };
  if (c.pci_mmio64_size != 0)
    resources.push_back(aml::qword_memory(Usage::kProducer, Cache::kCacheable, c.pci_mmio64_start,
                                          c.pci_mmio64_start + c.pci_mmio64_size - 1));
  return aml::device("PCI0", {
                                 aml::name("_HID", aml::eisa_id("PNP0A08")),
                                 aml::name("_CID", aml::eisa_id("PNP0A03")),
                                 aml::name("_UID", aml::integer(0)),
                                 aml::name("_SEG", aml::integer(0)),  // §6.5.6: segment 0
                                 aml::name("_BBN", aml::integer(0)),  // §6.5.5: base bus 0
                                 aml::name("_CRS", aml::resource_template(std::move(resources))),
                                 pci_routing_table(),
                             });
}

// Motherboard resources (PNP0C02) reserving the ECAM window: Linux uses an
// MCFG region only if firmware also reserves it here or in the e820 map
// (PCI Firmware spec 3.3 §4.1.2).
aml::Term motherboard_resources() {
  return aml::device(
      "MBRD", {
                  aml::name("_HID", aml::eisa_id("PNP0C02")),
                  aml::name("_UID", aml::integer(0)),
                  aml::name("_CRS", aml::resource_template({aml::dword_memory(
                                        Usage::kConsumer, Cache::kNonCacheable,
                                        static_cast<uint32_t>(kPciEcamBase),
                                        static_cast<uint32_t>(kPciEcamBase + kPciEcamSize - 1))})),
              });
}

// COM1, a 16550 UART (PNP0501), so the guest finds it without probing.
aml::Term com1() {
  return aml::device(
      "COM1", {
                  aml::name("_HID", aml::eisa_id("PNP0501")),
                  aml::name("_UID", aml::integer(0)),
                  aml::name("_CRS", aml::resource_template({aml::io(kPortCom1, kPortCom1, 0, 8),
                                                            aml::irq_no_flags(kIrqCom1)})),
              });
}

// A control-method power button (PNP0C0C, §4.8.2.2.1.2): HW-reduced ACPI
// has no fixed power button, so a button press must come as a Notify from
// an event device (a GED added through AcpiConfig::extra_devices).
aml::Term power_button() {
  return aml::device("PWRB", {
                                 aml::name("_HID", aml::eisa_id("PNP0C0C")),
                                 aml::name("_UID", aml::integer(0)),
                             });
}

}  // namespace

Result<aml::Bytes> build_dsdt_aml(const AcpiConfig& config) {
  aml::TermList sb{pci_host_bridge(config), motherboard_resources(), com1(), power_button()};
  for (const auto& dev : config.extra_devices) sb.push_back(dev);
  aml::Bytes out = SKIFF_TRY(s5_package());
  aml::Bytes sb_scope = SKIFF_TRY(aml::scope("\\_SB", std::move(sb)));
  out.insert(out.end(), sb_scope.begin(), sb_scope.end());
  return out;
}

}  // namespace skiff::x86
