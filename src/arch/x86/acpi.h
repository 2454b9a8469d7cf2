// ACPI tables for skiff's x86 machine: RSDP, XSDT, FADT, DSDT, MADT, MCFG
// and, for a NUMA guest, SRAT and SLIT, written into guest memory at the
// addresses layout.h reserves for them.
//
// The machine is a HW-reduced ACPI platform (ACPI 6.5 §4.1): no PM1/GPE
// register blocks, no SMI command port, no FACS. Power-off and reset go
// through the FADT's SLEEP_CONTROL_REG and RESET_REG, three byte-wide I/O
// ports that a device in the vmm layer implements. Interrupts are the
// in-kernel IOAPIC and local APICs, described by the MADT; PCI is one ECAM
// segment with bus 0 only (MCFG plus the host bridge in the DSDT).
//
// Growing it: a table is one builder function and one line in
// write_acpi_tables; a device under \_SB is an
// aml term in AcpiConfig::extra_devices (a Generic Event Device for CPU and
// memory hotplug goes there).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "arch/x86/aml.h"
#include "arch/x86/cpuid.h"
#include "base/result.h"
#include "memory/guest_memory.h"

namespace skiff::x86 {

// One guest NUMA node for the SRAT and SLIT (ACPI 6.5 §5.2.16, §5.2.17).
// Node i of AcpiConfig::numa_nodes is proximity domain i and SLIT locality i.
struct AcpiNumaNode {
  struct Range {
    uint64_t gpa = 0;
    uint64_t size = 0;
  };
  std::vector<uint32_t> cpus;  // vCPU indices; the SRAT gives their topology APIC IDs
  std::vector<Range> memory;   // guest physical RAM ranges on this node
  // Distance to node 0..N-1: 10 to itself, more than 10 to the others
  // (§5.2.17: 10 is local; Linux ignores a SLIT that breaks either rule).
  std::vector<uint8_t> distances;
};

// OEM ID in every table header (6 bytes, space padded).
inline constexpr char kAcpiOemId[] = "SKIFF ";

struct AcpiConfig {
  // vCPUs present at boot: MADT Processor Local APIC entries with the
  // Enabled flag.
  uint32_t boot_cpus = 1;
  // vCPUs the VM may grow to; 0 means boot_cpus. The ones above boot_cpus
  // get entries flagged Online Capable (ACPI 6.5 §5.2.12.2), so the guest
  // sizes its per-CPU data for them and a later hotplug can start them.
  uint32_t max_cpus = 0;
  // APIC IDs follow this topology (the same function CPUID uses). Default:
  // CpuTopology::flat(max_cpus).
  std::optional<CpuTopology> topology;

  // The 64-bit PCI MMIO window [start, start + size) forwarded by the host
  // bridge; size 0 leaves it out of _CRS.
  uint64_t pci_mmio64_start = 0;
  uint64_t pci_mmio64_size = 0;

  // An i8042 controller is at ports 0x60/0x64 (FADT IAPC_BOOT_ARCH bit 1;
  // Linux skips probing it when the bit is clear).
  bool i8042 = true;

  // Guest NUMA nodes: when not empty, an SRAT and a SLIT describe them.
  std::vector<AcpiNumaNode> numa_nodes;

  // Extra devices placed in \_SB after the built-in ones (e.g. a Generic
  // Event Device, ACPI0013), each an encoded aml::device term.
  std::vector<aml::Bytes> extra_devices;
};

// Builds all tables, checks they fit in [kAcpiTablesAddr, kAcpiTablesEnd),
// writes them and the RSDP into `mem` and returns the RSDP's address.
[[nodiscard]] Result<uint64_t> write_acpi_tables(const GuestMemory& mem, const AcpiConfig& config);

// The DSDT's AML body (the definition block after the table header).
[[nodiscard]] Result<aml::Bytes> build_dsdt_aml(const AcpiConfig& config);

}  // namespace skiff::x86
