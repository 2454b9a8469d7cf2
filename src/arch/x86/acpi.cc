#include "arch/x86/acpi.h"

#include <cstring>
#include <string_view>

#include "arch/x86/layout.h"

namespace skiff::x86 {
namespace {

using aml::Bytes;

constexpr size_t kHeaderSize = 36;   // ACPI 6.5 §5.2.6, Table 5.4
constexpr size_t kRsdpSize = 36;     // §5.2.5.3, Table 5.3 (revision 2)
constexpr size_t kFadtSize = 276;    // §5.2.9, Table 5.9 (revision 6)
constexpr uint64_t kTableAlign = 8;  // XSDT entries are 64-bit; keep every table aligned

static_assert(kRsdpAddr + kRsdpSize <= kAcpiTablesAddr, "RSDP overlaps the ACPI tables");
static_assert(kRsdpAddr % 16 == 0, "the RSDP must be on a 16-byte boundary (§5.2.5.1)");

// Little-endian byte sink for one table.
class TableBytes {
 public:
  void u8(uint64_t v) { put(v, 1); }
  void u16(uint64_t v) { put(v, 2); }
  void u32(uint64_t v) { put(v, 4); }
  void u64(uint64_t v) { put(v, 8); }
  void text(std::string_view s, size_t len) {
    for (size_t i = 0; i < len; ++i) bytes_.push_back(i < s.size() ? uint8_t(s[i]) : uint8_t(' '));
  }
  void append(const Bytes& b) { bytes_.insert(bytes_.end(), b.begin(), b.end()); }
  void zeros(size_t n) { bytes_.insert(bytes_.end(), n, 0); }
  // Overwrites `len` bytes at `offset` (for lengths and pointers known late).
  void patch(size_t offset, uint64_t v, size_t len) {
    for (size_t i = 0; i < len; ++i) bytes_[offset + i] = static_cast<uint8_t>(v >> (8 * i));
  }
  [[nodiscard]] size_t size() const { return bytes_.size(); }
  [[nodiscard]] Bytes& bytes() { return bytes_; }

 private:
  void put(uint64_t v, size_t len) {
    for (size_t i = 0; i < len; ++i) bytes_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  Bytes bytes_;
};

// The byte that makes [begin, end) sum to zero modulo 256 (§5.2.6).
uint8_t checksum(const Bytes& b, size_t begin, size_t end) {
  uint8_t sum = 0;
  for (size_t i = begin; i < end; ++i) sum = static_cast<uint8_t>(sum + b[i]);
  return static_cast<uint8_t>(-sum);
}

// System Description Table Header (§5.2.6); length and checksum are filled
// in by finish().
TableBytes header(std::string_view signature, uint8_t revision) {
  TableBytes t;
  t.text(signature, 4);
  t.u32(0);  // Length
  t.u8(revision);
  t.u8(0);  // Checksum
  t.text(kAcpiOemId, 6);
  t.text("SKIFFVM", 8);  // OEM Table ID
  t.u32(1);              // OEM Revision
  t.text("SKIF", 4);     // Creator ID
  t.u32(1);              // Creator Revision
  return t;
}

Bytes finish(TableBytes t) {
  t.patch(4, t.size(), 4);
  Bytes& b = t.bytes();
  b[9] = checksum(b, 0, b.size());
  return std::move(b);
}

// Generic Address Structure (§5.2.3.2) for a byte-wide System I/O register.
void gas_io_byte(TableBytes& t, uint16_t port) {
  t.u8(1);  // Address Space ID: System I/O
  t.u8(8);  // Register Bit Width
  t.u8(0);  // Register Bit Offset
  t.u8(1);  // Access Size: byte
  t.u64(port);
}

// FADT (§5.2.9), revision 6.5. Only the fields a HW-reduced platform uses
// are set; the legacy PM register blocks, SMI_CMD and the C/P-state fields
// stay zero (§4.1: "Hardware-reduced ACPI").
Bytes build_fadt(const AcpiConfig& c, uint64_t dsdt_addr) {
  TableBytes t = header("FACP", 6);
  t.u32(0);           // 36 FIRMWARE_CTRL: no FACS (optional when HW-reduced, §5.2.10)
  t.u32(0);           // 40 DSDT: X_DSDT is used instead
  t.u8(0);            // 44 reserved
  t.u8(0);            // 45 Preferred_PM_Profile: unspecified
  t.u16(9);           // 46 SCI_INT: ISA IRQ 9, routed level/high by the MADT override
  t.zeros(109 - 48);  // 48 SMI_CMD .. 108 CENTURY: no legacy PM hardware
  // 109 IAPC_BOOT_ARCH (§5.2.9.3): bit 1 "8042", bit 2 "VGA Not Present".
  // MSI stays allowed (bit 3 clear); CMOS RTC present (bit 5 clear).
  t.u16((c.i8042 ? 1u << 1 : 0u) | 1u << 2);
  t.u8(0);  // 111 reserved
  // 112 Flags (Table 5.10): WBINVD (bit 0, required for ACPI 2.0+),
  // PWR_BUTTON/SLP_BUTTON (bits 4, 5: no fixed-feature buttons; the power
  // button is a control-method device), RESET_REG_SUP (bit 10),
  // HW_REDUCED_ACPI (bit 20).
  t.u32(1u << 0 | 1u << 4 | 1u << 5 | 1u << 10 | 1u << 20);
  gas_io_byte(t, kPortAcpiReset);         // 116 RESET_REG
  t.u8(kAcpiResetValue);                  // 128 RESET_VALUE
  t.u16(0);                               // 129 ARM_BOOT_ARCH
  t.u8(5);                                // 131 FADT Minor Version: ACPI 6.5
  t.u64(0);                               // 132 X_FIRMWARE_CTRL
  t.u64(dsdt_addr);                       // 140 X_DSDT
  t.zeros(244 - 148);                     // 148 X_PM1a_EVT_BLK .. X_GPE1_BLK: none
  gas_io_byte(t, kPortAcpiSleepControl);  // 244 SLEEP_CONTROL_REG
  gas_io_byte(t, kPortAcpiSleepStatus);   // 256 SLEEP_STATUS_REG
  t.text("SKIFF", 8);                     // 268 Hypervisor Vendor Identity
  return finish(std::move(t));
}

// MADT (§5.2.12), revision 5 (Online Capable needs 6.3+).
Bytes build_madt(const AcpiConfig& c, uint32_t max_cpus, const CpuTopology& topo) {
  TableBytes t = header("APIC", 5);
  t.u32(kLapicAddr);  // Local Interrupt Controller Address
  t.u32(1);           // Flags: PCAT_COMPAT, the guest has 8259s to mask
  for (uint32_t i = 0; i < max_cpus; ++i) {
    // Processor Local APIC (§5.2.12.2): the UID matches the vCPU index;
    // bit 0 Enabled for boot vCPUs, bit 1 Online Capable for the rest.
    t.u8(0);
    t.u8(8);
    t.u8(i);
    t.u8(apic_id(topo, i));
    t.u32(i < c.boot_cpus ? 1u : 2u);
  }
  // I/O APIC (§5.2.12.3): ID 0 (KVM's in-kernel IOAPIC resets to ID 0),
  // GSIs from 0.
  t.u8(1);
  t.u8(12);
  t.u8(0);
  t.u8(0);
  t.u32(kIoapicAddr);
  t.u32(0);
  // Interrupt Source Overrides (§5.2.12.5), as QEMU's PC machines: the PIT
  // (ISA IRQ 0) is wired to IOAPIC pin 2, and the SCI (IRQ 9) is level
  // triggered, active high (flags: polarity 01, trigger mode 11 << 2).
  auto iso = [&t](uint8_t irq, uint32_t gsi, uint16_t flags) {
    t.u8(2);
    t.u8(10);
    t.u8(0);  // Bus: ISA
    t.u8(irq);
    t.u32(gsi);
    t.u16(flags);
  };
  iso(0, 2, 0);
  iso(9, 9, 0x000d);
  // Local APIC NMI (§5.2.12.7): LINT1 of every processor (UID 0xff) is the
  // NMI input, polarity and trigger conforming to the bus.
  t.u8(4);
  t.u8(6);
  t.u8(0xff);
  t.u16(0);
  t.u8(1);
  return finish(std::move(t));
}

// MCFG (PCI Firmware spec 3.3 §4.1.2): one ECAM allocation, segment 0,
// buses 0-0 (kPciEcamSize covers one bus).
Bytes build_mcfg() {
  static_assert(kPciEcamSize == 1 * kMiB, "MCFG describes exactly bus 0");
  TableBytes t = header("MCFG", 1);
  t.u64(0);  // reserved
  t.u64(kPciEcamBase);
  t.u16(0);  // PCI Segment Group
  t.u8(0);   // Start Bus
  t.u8(0);   // End Bus
  t.u32(0);  // reserved
  return finish(std::move(t));
}

// SRAT (§5.2.16), revision 3: which proximity domain each processor and
// each RAM range belongs to. Every vCPU a node lists is flagged Enabled,
// including the hotpluggable ones above boot_cpus, so the guest knows their
// node before they arrive (as QEMU does). Processors first, then memory.
Bytes build_srat(const AcpiConfig& c, const CpuTopology& topo) {
  TableBytes t = header("SRAT", 3);
  t.u32(1);  // reserved, 1 for backward compatibility (Table 5.62)
  t.u64(0);  // reserved
  for (uint32_t domain = 0; domain < c.numa_nodes.size(); ++domain) {
    const AcpiNumaNode& node = c.numa_nodes[domain];
    for (uint32_t cpu : node.cpus) {
      // Processor Local APIC/SAPIC Affinity (§5.2.16.1, Table 5.63).
      t.u8(0);
      t.u8(16);
      t.u8(domain & 0xff);  // Proximity Domain [7:0]
      t.u8(apic_id(topo, cpu));
      t.u32(1);                    // Flags: Enabled
      t.u8(0);                     // Local SAPIC EID
      t.u8((domain >> 8) & 0xff);  // Proximity Domain [31:8]
      t.u8((domain >> 16) & 0xff);
      t.u8((domain >> 24) & 0xff);
      t.u32(0);  // Clock Domain
    }
  }
  for (uint32_t domain = 0; domain < c.numa_nodes.size(); ++domain) {
    for (const auto& r : c.numa_nodes[domain].memory) {
      // Memory Affinity (§5.2.16.2, Table 5.64).
      t.u8(1);
      t.u8(40);
      t.u32(domain);
      t.u16(0);       // reserved
      t.u64(r.gpa);   // Base Address Low, High
      t.u64(r.size);  // Length Low, High
      t.u32(0);       // reserved
      t.u32(1);       // Flags: Enabled (not hot-pluggable, not non-volatile)
      t.u64(0);       // reserved
    }
  }
  return finish(std::move(t));
}

// SLIT (§5.2.17): the N x N matrix of relative distances between localities,
// row i being node i's distances.
Bytes build_slit(const AcpiConfig& c) {
  TableBytes t = header("SLIT", 1);
  t.u64(c.numa_nodes.size());  // Number of System Localities
  for (const auto& node : c.numa_nodes) t.append(node.distances);
  return finish(std::move(t));
}

Bytes build_dsdt(const Bytes& aml_body) {
  // Revision 2: integers are 64 bits, needed for the 64-bit MMIO window
  // (§19.6.29 DefinitionBlock ComplianceRevision).
  TableBytes t = header("DSDT", 2);
  t.append(aml_body);
  return finish(std::move(t));
}

Bytes build_xsdt(const std::vector<uint64_t>& tables) {
  TableBytes t = header("XSDT", 1);
  for (uint64_t addr : tables) t.u64(addr);
  return finish(std::move(t));
}

// RSDP (§5.2.5.3), revision 2: the first 20 bytes carry the ACPI 1.0
// checksum, all 36 the extended one. No RSDT: the XSDT is enough for any
// guest that understands revision 2.
Bytes build_rsdp(uint64_t xsdt_addr) {
  TableBytes t;
  t.text("RSD PTR ", 8);
  t.u8(0);  // Checksum
  t.text(kAcpiOemId, 6);
  t.u8(2);   // Revision
  t.u32(0);  // RsdtAddress
  t.u32(kRsdpSize);
  t.u64(xsdt_addr);
  t.u8(0);  // Extended Checksum
  t.zeros(3);
  Bytes& b = t.bytes();
  b[8] = checksum(b, 0, 20);
  b[32] = checksum(b, 0, kRsdpSize);
  return std::move(b);
}

// Places tables one after another, 8-byte aligned, inside the ACPI area.
class TableArea {
 public:
  Result<uint64_t> place(Bytes table) {
    uint64_t addr = (next_ + kTableAlign - 1) & ~(kTableAlign - 1);
    if (table.size() > kAcpiTablesEnd || addr > kAcpiTablesEnd - table.size())
      return fail("ACPI tables do not fit in {:#x}-{:#x}: table '{}' of {} bytes at {:#x}",
                  kAcpiTablesAddr, kAcpiTablesEnd,
                  std::string_view(reinterpret_cast<const char*>(table.data()), 4), table.size(),
                  addr);
    next_ = addr + table.size();
    placed_.push_back({addr, std::move(table)});
    return addr;
  }
  Result<> write(const GuestMemory& mem) const {
    for (const auto& [addr, bytes] : placed_) {
      auto r = mem.write(addr, bytes);
      if (!r) return context(r.error(), fmt::format("writing ACPI table at {:#x}", addr));
    }
    return {};
  }

 private:
  uint64_t next_ = kAcpiTablesAddr;
  std::vector<std::pair<uint64_t, Bytes>> placed_;
};

// The SRAT/SLIT rules a guest relies on: one locality per node, a square
// distance matrix with 10 on the diagonal and more off it, each vCPU in at
// most one node, non-empty RAM ranges that do not wrap.
Result<> validate_numa(const AcpiConfig& c, uint32_t max_cpus) {
  size_t n = c.numa_nodes.size();
  if (n > 255) return fail("ACPI SLIT: {} NUMA nodes, at most 255", n);
  std::vector<bool> seen(max_cpus, false);
  for (size_t i = 0; i < n; ++i) {
    const AcpiNumaNode& node = c.numa_nodes[i];
    if (node.distances.size() != n)
      return fail("ACPI SLIT: node {} has {} distances for {} nodes", i, node.distances.size(), n);
    for (size_t j = 0; j < n; ++j) {
      uint8_t d = node.distances[j];
      if (i == j && d != 10)
        return fail("ACPI SLIT: node {} distance to itself is {}, not 10", i, d);
      if (i != j && d <= 10)
        return fail("ACPI SLIT: distance {} from node {} to node {} must be above 10", d, i, j);
    }
    for (uint32_t cpu : node.cpus) {
      if (cpu >= max_cpus) return fail("ACPI SRAT: node {} lists vCPU {} of {}", i, cpu, max_cpus);
      if (seen[cpu]) return fail("ACPI SRAT: vCPU {} is in two NUMA nodes", cpu);
      seen[cpu] = true;
    }
    for (const auto& r : node.memory)
      if (r.size == 0 || r.gpa > UINT64_MAX - r.size)
        return fail("ACPI SRAT: node {} memory range {:#x}+{:#x} is empty or wraps", i, r.gpa,
                    r.size);
  }
  return {};
}

Result<> validate(const AcpiConfig& c, uint32_t max_cpus, const CpuTopology& topo) {
  if (c.boot_cpus == 0) return fail("ACPI: need at least one boot vCPU");
  if (max_cpus < c.boot_cpus)
    return fail("ACPI: max_cpus {} is below boot_cpus {}", max_cpus, c.boot_cpus);
  if (auto r = validate_topology(topo, max_cpus); !r) return context(r.error(), "ACPI MADT");
  SKIFF_TRY_VOID(validate_numa(c, max_cpus));
  if (c.pci_mmio64_size != 0 && c.pci_mmio64_start > UINT64_MAX - c.pci_mmio64_size + 1)
    return fail("ACPI: 64-bit PCI window {:#x}+{:#x} wraps around", c.pci_mmio64_start,
                c.pci_mmio64_size);
  if (c.pci_mmio64_size != 0 && c.pci_mmio64_start < kRam64Start)
    return fail("ACPI: 64-bit PCI window at {:#x} is below 4 GiB", c.pci_mmio64_start);
  return {};
}

}  // namespace

Result<uint64_t> write_acpi_tables(const GuestMemory& mem, const AcpiConfig& config) {
  uint32_t max_cpus = config.max_cpus == 0 ? config.boot_cpus : config.max_cpus;
  CpuTopology topo = config.topology.value_or(CpuTopology::flat(max_cpus));
  SKIFF_TRY_VOID(validate(config, max_cpus, topo));

  TableArea area;
  Bytes dsdt_aml = SKIFF_TRY(build_dsdt_aml(config));
  uint64_t dsdt = SKIFF_TRY(area.place(build_dsdt(dsdt_aml)));
  // Everything the XSDT lists; the DSDT is reached through the FADT only.
  std::vector<uint64_t> xsdt_entries{
      SKIFF_TRY(area.place(build_fadt(config, dsdt))),
      SKIFF_TRY(area.place(build_madt(config, max_cpus, topo))),
      SKIFF_TRY(area.place(build_mcfg())),
  };
  if (!config.numa_nodes.empty()) {
    xsdt_entries.push_back(SKIFF_TRY(area.place(build_srat(config, topo))));
    xsdt_entries.push_back(SKIFF_TRY(area.place(build_slit(config))));
  }
  uint64_t xsdt = SKIFF_TRY(area.place(build_xsdt(xsdt_entries)));

  SKIFF_TRY_VOID(area.write(mem));
  auto r = mem.write(kRsdpAddr, build_rsdp(xsdt));
  if (!r) return context(r.error(), "writing the ACPI RSDP");
  return kRsdpAddr;
}

}  // namespace skiff::x86
