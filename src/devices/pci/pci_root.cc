#include "devices/pci/pci_root.h"

#include <atomic>
#include <cstring>

#include "base/log.h"

namespace skiff::pci {

namespace {

// 00:00.0, the host bridge: Red Hat's "QEMU PCIe host bridge" IDs
// (1b36:0008, class 06/00), which Linux binds no driver to.
class HostBridge final : public PciDevice {
 public:
  HostBridge()
      : config_(PciIds{.vendor_id = 0x1b36,
                       .device_id = 0x0008,
                       .subsystem_vendor_id = 0x1af4,
                       .subsystem_id = 0x1100,
                       .class_code = 0x060000}) {}
  PciConfigSpace& config() override { return config_; }
  void bar_read(unsigned, uint64_t, std::span<uint8_t> data) override {
    std::memset(data.data(), 0xff, data.size());
  }
  void bar_write(unsigned, uint64_t, std::span<const uint8_t>) override {}

 private:
  PciConfigSpace config_;
};

// Configuration mechanism #1 (PCI 3.0 §3.2.2.3.2). CONFIG_ADDRESS is one
// latch shared by all vCPUs, as on real chipsets; drivers serialise.
class ConfigIo final : public BusDevice {
 public:
  explicit ConfigIo(PciRoot& root) : root_(root) {}

  void read(uint64_t offset, std::span<uint8_t> data) override {
    std::memset(data.data(), 0xff, data.size());
    if (offset == 0 && data.size() == 4) {
      uint32_t a = address_.load(std::memory_order_relaxed);
      std::memcpy(data.data(), &a, 4);
      return;
    }
    uint8_t dev, fn;
    uint16_t reg;
    if (decode(offset, data.size(), dev, fn, reg)) root_.config_read(0, dev, fn, reg, data);
  }

  void write(uint64_t offset, std::span<const uint8_t> data) override {
    if (offset == 0 && data.size() == 4) {
      uint32_t a;
      std::memcpy(&a, data.data(), 4);
      // Bits 30:24 are reserved and 1:0 read as 0 (§3.2.2.3.2).
      address_.store(a & 0x80fffffcu, std::memory_order_relaxed);
      return;
    }
    uint8_t dev, fn;
    uint16_t reg;
    if (decode(offset, data.size(), dev, fn, reg)) root_.config_write(0, dev, fn, reg, data);
  }

 private:
  // Only CONFIG_DATA (offsets 4..7) accesses that stay inside the dword,
  // with the enable bit set and bus 0, reach a function.
  bool decode(uint64_t offset, size_t size, uint8_t& dev, uint8_t& fn, uint16_t& reg) const {
    if (offset < 4 || offset + size > 8) return false;
    uint32_t a = address_.load(std::memory_order_relaxed);
    if (!(a & 0x80000000u) || ((a >> 16) & 0xff) != 0) return false;
    dev = static_cast<uint8_t>((a >> 11) & 0x1f);
    fn = static_cast<uint8_t>((a >> 8) & 0x7);
    reg = static_cast<uint16_t>((a & 0xfc) + (offset - 4));
    return true;
  }

  PciRoot& root_;
  std::atomic<uint32_t> address_{0};
};

// ECAM (PCIe 5.0 §7.2.2) for bus 0. 8-byte accesses are split into two
// dwords (the ECAM spec allows only up to dword; splitting is harmless).
class Ecam final : public BusDevice {
 public:
  explicit Ecam(PciRoot& root) : root_(root) {}

  void read(uint64_t offset, std::span<uint8_t> data) override {
    if (data.size() == 8) {
      read(offset, data.first(4));
      read(offset + 4, data.subspan(4));
      return;
    }
    std::memset(data.data(), 0xff, data.size());
    if (offset >> 20 != 0) return;  // bus 0 only
    root_.config_read(0, dev(offset), fn(offset), reg(offset), data);
  }

  void write(uint64_t offset, std::span<const uint8_t> data) override {
    if (data.size() == 8) {
      write(offset, data.first(4));
      write(offset + 4, data.subspan(4));
      return;
    }
    if (offset >> 20 != 0) return;
    root_.config_write(0, dev(offset), fn(offset), reg(offset), data);
  }

 private:
  static uint8_t dev(uint64_t o) { return static_cast<uint8_t>((o >> 15) & 0x1f); }
  static uint8_t fn(uint64_t o) { return static_cast<uint8_t>((o >> 12) & 0x7); }
  static uint16_t reg(uint64_t o) { return static_cast<uint16_t>(o & 0xfff); }

  PciRoot& root_;
};

// One memory BAR of one device on the MMIO bus.
class BarRegion final : public BusDevice {
 public:
  BarRegion(std::shared_ptr<PciDevice> device, unsigned bar)
      : device_(std::move(device)), bar_(bar) {}
  void read(uint64_t offset, std::span<uint8_t> data) override {
    device_->bar_read(bar_, offset, data);
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    device_->bar_write(bar_, offset, data);
  }

 private:
  std::shared_ptr<PciDevice> device_;
  unsigned bar_;
};

bool access_ok(uint16_t reg, size_t size) {
  if (size != 1 && size != 2 && size != 4) return false;
  if (reg % size != 0) return false;  // naturally aligned, so never crosses a dword
  return reg + size <= kConfigSize;
}

}  // namespace

Result<uint64_t> BarAllocator::allocate(uint64_t size) {
  if (size == 0 || (size & (size - 1)) != 0)
    return fail("BAR size {:#x} is not a power of two", size);
  uint64_t base = (next_ + size - 1) & ~(size - 1);
  if (base < next_ || base > window_.end || size > window_.end - base)
    return fail("no room for a {:#x}-byte BAR in [{:#x}, {:#x})", size, window_.start, window_.end);
  next_ = base + size;
  return base;
}

PciRoot::PciRoot(Bus& mmio, BarWindow mmio32, BarWindow mmio64)
    : mmio_(mmio), alloc32_(mmio32), alloc64_(mmio64) {
  slots_[0].device = std::make_shared<HostBridge>();
  config_io_ = std::make_shared<ConfigIo>(*this);
  ecam_ = std::make_shared<Ecam>(*this);
}

PciRoot::~PciRoot() {
  std::lock_guard lock(mu_);
  for (auto& s : slots_)
    for (auto& m : s.mapped)
      if (m) (void)mmio_.remove(*m);
}

Result<uint8_t> PciRoot::add_device(std::shared_ptr<PciDevice> device) {
  std::lock_guard lock(mu_);
  for (uint8_t d = 1; d < kMaxDevices; ++d) {
    if (slots_[d].device) continue;
    PciConfigSpace& cs = device->config();
    for (unsigned b = 0; b < kNumBars; ++b) {
      const BarInfo& info = cs.bar(b);
      if (info.size == 0) continue;
      bool high = info.is64 && info.prefetchable && alloc64_.window().end > alloc64_.window().start;
      uint64_t addr = SKIFF_TRY(high ? alloc64_.allocate(info.size) : alloc32_.allocate(info.size));
      cs.set_bar_address(b, addr);
    }
    slots_[d].device = std::move(device);
    return d;
  }
  return fail("PCI bus 0 is full ({} devices)", kMaxDevices - 1);
}

bool PciRoot::bar_placement_ok(uint64_t addr, uint64_t size) const {
  if (addr == 0 || (addr & (size - 1)) != 0) return false;
  for (const BarWindow& w : {alloc32_.window(), alloc64_.window()})
    if (addr >= w.start && addr < w.end && size <= w.end - addr) return true;
  return false;
}

void PciRoot::update_mappings(Slot& slot) {
  PciConfigSpace& cs = slot.device->config();
  for (unsigned b = 0; b < kNumBars; ++b) {
    const BarInfo& info = cs.bar(b);
    if (info.size == 0) continue;
    std::optional<uint64_t> want;
    uint64_t addr = cs.bar_address(b);
    if (cs.memory_enabled() && bar_placement_ok(addr, info.size)) want = addr;
    if (want == slot.mapped[b]) continue;
    if (slot.mapped[b]) (void)mmio_.remove(*slot.mapped[b]);
    slot.mapped[b].reset();
    if (want) {
      auto r = mmio_.insert(std::make_shared<BarRegion>(slot.device, b), *want, info.size);
      if (r) {
        slot.mapped[b] = want;
      } else {
        // Overlaps another device: the BAR stays dark (a guest bug, not ours).
        LOG_WARN("pci: BAR {} at {:#x} not mapped: {}", b, *want, r.error().what());
      }
    }
    slot.device->bar_mapped(b, slot.mapped[b]);
  }
}

void PciRoot::config_read(uint8_t bus, uint8_t dev, uint8_t fn, uint16_t reg,
                          std::span<uint8_t> data) {
  std::memset(data.data(), 0xff, data.size());
  if (bus != 0 || dev >= kMaxDevices || fn != 0 || !access_ok(reg, data.size())) return;
  std::lock_guard lock(mu_);
  Slot& s = slots_[dev];
  if (!s.device) return;
  s.device->config_reading(reg, data.size());
  s.device->config().read(reg, data);
}

void PciRoot::config_write(uint8_t bus, uint8_t dev, uint8_t fn, uint16_t reg,
                           std::span<const uint8_t> data) {
  if (bus != 0 || dev >= kMaxDevices || fn != 0 || !access_ok(reg, data.size())) return;
  std::lock_guard lock(mu_);
  Slot& s = slots_[dev];
  if (!s.device) return;
  s.device->config().write(reg, data);
  s.device->config_written(reg, data.size());
  // Only the command register and the BARs change where a device decodes.
  if (reg < kRegBar0 + 4 * kNumBars && reg + data.size() > kRegCommand) update_mappings(s);
}

std::optional<uint64_t> PciRoot::bar_mapping(uint8_t dev, unsigned bar) const {
  std::lock_guard lock(mu_);
  if (dev >= kMaxDevices || bar >= kNumBars) return std::nullopt;
  return slots_[dev].mapped[bar];
}

void PciRoot::reset() {
  std::lock_guard lock(mu_);
  for (auto& s : slots_) {
    if (!s.device) continue;
    s.device->config().reset();
    update_mappings(s);  // decode is off now: unmaps everything
    s.device->reset();
  }
}

}  // namespace skiff::pci
