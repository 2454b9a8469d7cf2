// Test helpers: a PCI root on a port bus and an MMIO bus, with config
// accessors for both mechanisms, and a fake device with two BARs.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "arch/x86/layout.h"
#include "devices/bus.h"
#include "devices/pci/pci_root.h"

namespace skiff::pci::testing {

inline uint32_t cf8_address(uint8_t bus, uint8_t dev, uint8_t fn, uint16_t reg) {
  return 0x80000000u | uint32_t{bus} << 16 | uint32_t{dev} << 11 | uint32_t{fn} << 8 |
         (reg & 0xfcu);
}

struct Machine {
  Bus pio{"pio"};
  Bus mmio{"mmio"};
  PciRoot root{
      mmio, {x86::kPciMmio32Start, x86::kPciMmio32End}, {0x10000000000ull, 0x20000000000ull}};

  Machine() {
    EXPECT_TRUE(pio.insert(root.config_io(), x86::kPortPciConfigAddr, 8));
    EXPECT_TRUE(mmio.insert(root.ecam(), x86::kPciEcamBase, x86::kPciEcamSize));
  }

  // Mechanism #1: dword to 0xcf8, then `size` bytes at 0xcfc + (reg & 3).
  uint32_t io_read(uint8_t dev, uint16_t reg, size_t size = 4, uint8_t fn = 0, uint8_t bus = 0) {
    uint32_t a = cf8_address(bus, dev, fn, reg);
    pio.write(x86::kPortPciConfigAddr, std::span(reinterpret_cast<const uint8_t*>(&a), 4));
    uint32_t v = 0;
    pio.read(x86::kPortPciConfigData + (reg & 3), std::span(reinterpret_cast<uint8_t*>(&v), size));
    return v;
  }
  void io_write(uint8_t dev, uint16_t reg, uint32_t v, size_t size = 4) {
    uint32_t a = cf8_address(0, dev, 0, reg);
    pio.write(x86::kPortPciConfigAddr, std::span(reinterpret_cast<const uint8_t*>(&a), 4));
    pio.write(x86::kPortPciConfigData + (reg & 3),
              std::span(reinterpret_cast<const uint8_t*>(&v), size));
  }
  static uint64_t ecam_addr(uint8_t dev, uint16_t reg, uint8_t fn = 0, uint8_t bus = 0) {
    return x86::kPciEcamBase +
           (uint64_t{bus} << 20 | uint64_t{dev} << 15 | uint64_t{fn} << 12 | reg);
  }
  uint64_t ecam_read(uint8_t dev, uint16_t reg, size_t size = 4, uint8_t fn = 0) {
    uint64_t v = 0;
    mmio.read(ecam_addr(dev, reg, fn), std::span(reinterpret_cast<uint8_t*>(&v), size));
    return v;
  }
  void ecam_write(uint8_t dev, uint16_t reg, uint64_t v, size_t size = 4) {
    mmio.write(ecam_addr(dev, reg), std::span(reinterpret_cast<const uint8_t*>(&v), size));
  }
  uint64_t mmio_read(uint64_t addr, size_t size = 4) {
    uint64_t v = 0;
    mmio.read(addr, std::span(reinterpret_cast<uint8_t*>(&v), size));
    return v;
  }
  bool mmio_claimed(uint64_t addr) {
    uint32_t v = 0;
    return mmio.read(addr, std::span(reinterpret_cast<uint8_t*>(&v), 4));
  }
};

// BAR 0: 32-bit 16 KiB; BAR 2: 64-bit prefetchable 1 MiB. Each BAR reads
// back (bar << 24 | offset) and records writes and mapping changes.
class FakeDevice : public PciDevice {
 public:
  FakeDevice()
      : config_(PciIds{.vendor_id = 0x1234,
                       .device_id = 0x5678,
                       .subsystem_vendor_id = 0x1af4,
                       .subsystem_id = 0x0042,
                       .revision = 3,
                       .class_code = 0x018000,
                       .interrupt_pin = 1}) {
    EXPECT_TRUE(config_.add_memory_bar(0, 16 * 1024, false, false));
    EXPECT_TRUE(config_.add_memory_bar(2, 1 << 20, true, true));
  }
  PciConfigSpace& config() override { return config_; }
  void bar_read(unsigned bar, uint64_t offset, std::span<uint8_t> data) override {
    uint32_t v = static_cast<uint32_t>(bar << 24 | offset);
    std::memset(data.data(), 0, data.size());
    std::memcpy(data.data(), &v, std::min<size_t>(4, data.size()));
  }
  void bar_write(unsigned bar, uint64_t offset, std::span<const uint8_t>) override {
    writes.push_back({bar, offset});
  }
  void bar_mapped(unsigned bar, std::optional<uint64_t> address) override {
    mappings.push_back({bar, address});
  }
  void reset() override { ++resets; }

  struct Write {
    unsigned bar;
    uint64_t offset;
  };
  struct Mapping {
    unsigned bar;
    std::optional<uint64_t> address;
  };
  std::vector<Write> writes;
  std::vector<Mapping> mappings;
  int resets = 0;

 private:
  PciConfigSpace config_;
};

}  // namespace skiff::pci::testing
