// PciRoot: the host bridge of skiff's single PCI segment, bus 0 only
// (arch/x86/layout.h; the DSDT's \_SB.PCI0 and the MCFG describe it).
//
// Config space is reachable two ways, which must give the same answers:
//   - configuration mechanism #1 (PCI 3.0 §3.2.2.3.2): a dword write of
//     enable|bus|dev|fn|reg to CONFIG_ADDRESS 0xcf8, then 1/2/4-byte
//     accesses to CONFIG_DATA 0xcfc..0xcff reach the first 256 bytes;
//   - ECAM (PCIe 5.0 §7.2.2): MMIO at kPciEcamBase, bus << 20 | dev << 15 |
//     fn << 12 | reg, all 4 KiB.
// Absent functions, other buses and accesses that are unaligned or cross
// a dword read all-ones and ignore writes (§7.2.2.1 leaves unaligned ECAM
// accesses undefined; all-ones is what "no device" looks like).
//
// BARs: at add_device() each memory BAR gets a naturally aligned place in
// the 32-bit window (or the 64-bit window for 64-bit prefetchable BARs,
// when configured), as firmware would. The guest may move them. After
// every config write the root re-derives where each BAR decodes: only with
// Memory Space enabled, naturally aligned, inside a window and not
// overlapping anything else on the MMIO bus. A BAR that fails a check does
// not decode (like a real device programmed outside the bridge's window);
// the device is told through PciDevice::bar_mapped.
//
// Function 0 of device 0 is the host bridge itself (class 06/00).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "base/result.h"
#include "devices/bus.h"
#include "devices/pci/pci_device.h"

namespace skiff::pci {

inline constexpr unsigned kMaxDevices = 32;  // device numbers on bus 0 (functions: 0 only)

// An address window BARs are placed in (half-open).
struct BarWindow {
  uint64_t start = 0;
  uint64_t end = 0;
};

// Bump allocator of naturally aligned ranges inside one window.
class BarAllocator {
 public:
  explicit BarAllocator(BarWindow w) : window_(w), next_(w.start) {}
  [[nodiscard]] Result<uint64_t> allocate(uint64_t size);
  [[nodiscard]] const BarWindow& window() const { return window_; }

 private:
  BarWindow window_;
  uint64_t next_;
};

class PciRoot {
 public:
  // mmio32: the window below 4 GiB; mmio64: above 4 GiB (end == start: none).
  PciRoot(Bus& mmio, BarWindow mmio32, BarWindow mmio64);
  ~PciRoot();
  PciRoot(const PciRoot&) = delete;
  PciRoot& operator=(const PciRoot&) = delete;

  // Plugs `device` into the next free device number (1..31), places its
  // BARs, and returns the device number.
  [[nodiscard]] Result<uint8_t> add_device(std::shared_ptr<PciDevice> device);

  // Config access by bus/device/function/register (both mechanisms end
  // here). `data` is 1, 2 or 4 bytes.
  void config_read(uint8_t bus, uint8_t dev, uint8_t fn, uint16_t reg, std::span<uint8_t> data);
  void config_write(uint8_t bus, uint8_t dev, uint8_t fn, uint16_t reg,
                    std::span<const uint8_t> data);

  // The BusDevices to insert: 8 ports at kPortPciConfigAddr, and the ECAM
  // window (bus 0: 1 MiB).
  [[nodiscard]] std::shared_ptr<BusDevice> config_io() const { return config_io_; }
  [[nodiscard]] std::shared_ptr<BusDevice> ecam() const { return ecam_; }

  // Where BAR `bar` of device `dev` decodes now (tests, diagnostics).
  [[nodiscard]] std::optional<uint64_t> bar_mapping(uint8_t dev, unsigned bar) const;

  // Machine reset: every function back to power-on (decode off, BARs at
  // their placement), every BAR unmapped.
  void reset();

 private:
  struct Slot {
    std::shared_ptr<PciDevice> device;
    std::array<std::optional<uint64_t>, kNumBars> mapped{};
  };
  void update_mappings(Slot& slot);
  [[nodiscard]] bool bar_placement_ok(uint64_t addr, uint64_t size) const;

  Bus& mmio_;
  BarAllocator alloc32_;
  BarAllocator alloc64_;
  mutable std::mutex mu_;
  std::array<Slot, kMaxDevices> slots_;
  std::shared_ptr<BusDevice> config_io_;
  std::shared_ptr<BusDevice> ecam_;
};

}  // namespace skiff::pci
