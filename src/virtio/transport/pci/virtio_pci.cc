#include "virtio/transport/pci/virtio_pci.h"

#include <sys/eventfd.h>

#include <cstring>

#include "base/log.h"

namespace skiff::virtio {

namespace {

constexpr uint8_t kCapIdVendor = 0x09;  // PCI 3.0 Appendix H: vendor specific
constexpr uint8_t kVirtioCapLen = 16;   // struct virtio_pci_cap
constexpr uint8_t kNotifyCapLen = 20;   // + notify_off_multiplier
constexpr uint8_t kPciCfgCapLen = 20;   // + pci_cfg_data[4]

// PCI class codes (PCI Code and ID Assignment spec): what Linux's lspci
// shows; drivers match on vendor/device only.
uint32_t class_code_for(uint32_t device_id) {
  switch (device_id) {
    case 1:
      return 0x020000;  // network: Ethernet
    case 2:
      return 0x018000;  // mass storage: other
    default:
      return 0xff0000;  // unclassified
  }
}

template <typename T>
T load_le(std::span<const uint8_t> d) {
  T v{};
  std::memcpy(&v, d.data(), sizeof(T));
  return v;
}

}  // namespace

Result<std::shared_ptr<VirtioPciDevice>> VirtioPciDevice::create(
    std::unique_ptr<VirtioDevice> device, const GuestMemory& mem, pci::MsiSender& msi,
    pci::IoEventRegistrar& ioevents, IrqLine* intx, uint8_t intx_line) {
  if (!device) return fail("virtio-pci: no device");
  if (device->num_queues() == 0 ||
      (device->num_queues() + 1u) * pci::kMsixEntrySize > kMsixPbaOffset - kMsixTableOffset)
    return fail("virtio-pci {}: {} queues do not fit the BAR layout", device->name(),
                device->num_queues());
  if (device->config_size() > kNotifyOffset - kDeviceCfgOffset)
    return fail("virtio-pci {}: {}-byte config space does not fit", device->name(),
                device->config_size());
  std::shared_ptr<VirtioPciDevice> d(
      new VirtioPciDevice(std::move(device), mem, msi, ioevents, intx));
  for (uint16_t q = 0; q < d->num_queues(); ++q)
    d->queue_events_.push_back(SKIFF_TRY(EventFd::create(0, EFD_NONBLOCK)));
  SKIFF_TRY_VOID(d->build_config_space(intx_line));
  VirtioPciDevice* self = d.get();
  d->device_->set_memory(&mem);
  d->device_->offer_ring_reset();  // queue_reset is implemented here
  d->device_->set_interrupt([self](InterruptKind k, uint16_t q) { self->interrupt(k, q); });
  return d;
}

VirtioPciDevice::VirtioPciDevice(std::unique_ptr<VirtioDevice> device, const GuestMemory& mem,
                                 pci::MsiSender& msi, pci::IoEventRegistrar& ioevents,
                                 IrqLine* intx)
    : device_(std::move(device)),
      mem_(mem),
      ioevents_(ioevents),
      intx_(intx),
      config_(pci::PciIds{
          .vendor_id = kVirtioPciVendorId,
          .device_id = static_cast<uint16_t>(kVirtioPciDeviceIdBase + device_->device_id()),
          .subsystem_vendor_id = kVirtioPciVendorId,
          .subsystem_id = 0x1100,  // as QEMU: only the vendor/device IDs matter (§4.1.2.1)
          .revision = 1,           // non-transitional (§4.1.2.1)
          .class_code = class_code_for(device_->device_id()),
          .interrupt_pin = 1,  // INTA#
      }),
      msix_(static_cast<uint16_t>(device_->num_queues() + 1), msi),
      queue_vectors_(new std::atomic<uint16_t>[device_->num_queues()]) {
  for (uint16_t q = 0; q < device_->num_queues(); ++q) queue_vectors_[q] = kVirtioMsiNoVector;
}

VirtioPciDevice::~VirtioPciDevice() {
  bind_notifications(std::nullopt);
}

Result<uint16_t> VirtioPciDevice::add_virtio_cap(uint8_t cfg_type, uint8_t cap_len, uint64_t offset,
                                                 uint64_t length) {
  // struct virtio_pci_cap (§4.1.4): vndr, next, len, cfg_type, bar, id,
  // padding[2], offset, length.
  uint16_t at = SKIFF_TRY(config_.add_capability(kCapIdVendor, cap_len));
  config_.set_u8(static_cast<uint16_t>(at + 2), cap_len);
  config_.set_u8(static_cast<uint16_t>(at + 3), cfg_type);
  config_.set_u8(static_cast<uint16_t>(at + 4), 0);  // BAR 0
  config_.set_u32(static_cast<uint16_t>(at + 8), static_cast<uint32_t>(offset));
  config_.set_u32(static_cast<uint16_t>(at + 12), static_cast<uint32_t>(length));
  return at;
}

Result<> VirtioPciDevice::build_config_space(uint8_t intx_line) {
  SKIFF_TRY_VOID(config_.add_memory_bar(0, kVirtioPciBarSize, /*is64=*/true,
                                        /*prefetchable=*/false));
  config_.set_interrupt_line(intx_line);
  SKIFF_TRY_VOID(msix_.add_capability(config_, 0, static_cast<uint32_t>(kMsixTableOffset),
                                      static_cast<uint32_t>(kMsixPbaOffset)));
  SKIFF_TRY(
      add_virtio_cap(kVirtioPciCapCommonCfg, kVirtioCapLen, kCommonCfgOffset, kCommonCfgSize));
  uint16_t notify = SKIFF_TRY(add_virtio_cap(kVirtioPciCapNotifyCfg, kNotifyCapLen, kNotifyOffset,
                                             uint64_t{num_queues()} * kNotifyOffMultiplier));
  config_.set_u32(static_cast<uint16_t>(notify + 16), kNotifyOffMultiplier);
  SKIFF_TRY(add_virtio_cap(kVirtioPciCapIsrCfg, kVirtioCapLen, kIsrOffset, 1));
  if (device_->config_size() > 0)
    SKIFF_TRY(add_virtio_cap(kVirtioPciCapDeviceCfg, kVirtioCapLen, kDeviceCfgOffset,
                             device_->config_size()));
  // The configuration access window (§4.1.4.9): the driver writes bar,
  // offset and length, then reads or writes pci_cfg_data.
  pci_cfg_cap_ = SKIFF_TRY(add_virtio_cap(kVirtioPciCapPciCfg, kPciCfgCapLen, 0, 0));
  const uint8_t ones[4] = {0xff, 0xff, 0xff, 0xff};
  config_.set_write_mask(static_cast<uint16_t>(pci_cfg_cap_ + 4), std::span(ones, 1));
  config_.set_write_mask(static_cast<uint16_t>(pci_cfg_cap_ + 8), ones);
  config_.set_write_mask(static_cast<uint16_t>(pci_cfg_cap_ + 12), ones);
  config_.set_write_mask(static_cast<uint16_t>(pci_cfg_cap_ + 16), ones);
  return {};
}

// --- PCI configuration access window (§4.1.4.9.1: the device MUST use
// bar, offset and length when the driver accesses pci_cfg_data; lengths
// other than 1, 2, 4 or an offset not aligned to length are ignored).
void VirtioPciDevice::config_reading(uint16_t offset, size_t size) {
  // Status bit 3, Interrupt Status (PCI 3.0 §6.2.3): this function's INTx#
  // state before Interrupt Disable masks it, i.e. a pending ISR bit. Set
  // here, under the root's lock, rather than from the device thread.
  if (offset < pci::kRegStatus + 2 && offset + size > pci::kRegStatus) {
    auto st = static_cast<uint16_t>(config_.u16(pci::kRegStatus) & ~pci::kStatusInterrupt);
    config_.set_u16(pci::kRegStatus,
                    static_cast<uint16_t>(st | (isr_.load() != 0 ? pci::kStatusInterrupt : 0)));
  }
  uint16_t data_at = static_cast<uint16_t>(pci_cfg_cap_ + 16);
  if (pci_cfg_cap_ == 0 || offset + size <= data_at || offset >= data_at + 4) return;
  uint8_t bar = config_.u8(static_cast<uint16_t>(pci_cfg_cap_ + 4));
  uint32_t off = config_.u32(static_cast<uint16_t>(pci_cfg_cap_ + 8));
  uint32_t len = config_.u32(static_cast<uint16_t>(pci_cfg_cap_ + 12));
  if (bar != 0 || (len != 1 && len != 2 && len != 4) || off % len != 0) return;
  uint8_t buf[4] = {};
  bar_read(0, off, std::span(buf, len));
  config_.set_u32(data_at, load_le<uint32_t>(buf));
}

void VirtioPciDevice::config_written(uint16_t offset, size_t size) {
  msix_.config_written(config_);
  // Mirrored for the device thread (config_ is the root's, under its lock).
  // Setting Interrupt Disable deasserts INTx (PCI 3.0 §6.2.2).
  bool disable = config_.command() & pci::kCommandIntxDisable;
  if (intx_disabled_.exchange(disable) != disable && intx_)
    intx_->set_level(!disable && isr_.load() != 0);
  uint16_t data_at = static_cast<uint16_t>(pci_cfg_cap_ + 16);
  if (pci_cfg_cap_ == 0 || offset + size <= data_at || offset >= data_at + 4) return;
  uint8_t bar = config_.u8(static_cast<uint16_t>(pci_cfg_cap_ + 4));
  uint32_t off = config_.u32(static_cast<uint16_t>(pci_cfg_cap_ + 8));
  uint32_t len = config_.u32(static_cast<uint16_t>(pci_cfg_cap_ + 12));
  if (bar != 0 || (len != 1 && len != 2 && len != 4) || off % len != 0) return;
  uint8_t buf[4];
  uint32_t v = config_.u32(data_at);
  std::memcpy(buf, &v, 4);
  bar_write(0, off, std::span<const uint8_t>(buf, len));
}

// --- BAR 0
void VirtioPciDevice::bar_read(unsigned bar, uint64_t offset, std::span<uint8_t> data) {
  std::memset(data.data(), 0, data.size());
  if (bar != 0 || offset >= kVirtioPciBarSize) return;
  if (offset < kIsrOffset) {
    common_read(offset - kCommonCfgOffset, data);
  } else if (offset == kIsrOffset) {
    // §4.1.4.5.1: reading the ISR resets it (and deasserts INTx).
    data[0] = isr_.exchange(0);
    if (data[0] && intx_) intx_->set_level(false);
  } else if (offset >= kDeviceCfgOffset && offset < kNotifyOffset) {
    std::lock_guard lock(mu_);
    (void)device_->read_config(offset - kDeviceCfgOffset, data);  // outside: reads 0
  } else if (offset >= kMsixTableOffset && offset < kMsixPbaOffset) {
    msix_.table_read(offset - kMsixTableOffset, data);
  } else if (offset >= kMsixPbaOffset) {
    msix_.pba_read(offset - kMsixPbaOffset, data);
  }
}

void VirtioPciDevice::bar_write(unsigned bar, uint64_t offset, std::span<const uint8_t> data) {
  if (bar != 0 || offset >= kVirtioPciBarSize) return;
  if (offset < kIsrOffset) {
    common_write(offset - kCommonCfgOffset, data);
  } else if (offset >= kDeviceCfgOffset && offset < kNotifyOffset) {
    std::lock_guard lock(mu_);
    if (auto r = device_->write_config(offset - kDeviceCfgOffset, data); !r)
      LOG_DEBUG("virtio-pci {}: {}", device_->name(), r.error().what());
  } else if (offset >= kNotifyOffset && offset < kMsixTableOffset) {
    // The slow notify path (no ioeventfd matched this write).
    uint64_t rel = offset - kNotifyOffset;
    if (rel % kNotifyOffMultiplier == 0 && rel / kNotifyOffMultiplier < num_queues()) {
      notify_exits_.fetch_add(1, std::memory_order_relaxed);
      queue_events_[rel / kNotifyOffMultiplier].signal();
    }
  } else if (offset >= kMsixTableOffset && offset < kMsixPbaOffset) {
    msix_.table_write(offset - kMsixTableOffset, data);
  }  // ISR and PBA are read-only
}

void VirtioPciDevice::bar_mapped(unsigned bar, std::optional<uint64_t> address) {
  if (bar == 0) bind_notifications(address);
}

void VirtioPciDevice::bind_notifications(std::optional<uint64_t> bar_address) {
  if (notify_base_) {
    for (uint16_t q = 0; q < num_queues(); ++q)
      ioevents_.unbind_ioevent(*notify_base_ + q * kNotifyOffMultiplier, 2, queue_events_[q].get());
    notify_base_.reset();
  }
  if (!bar_address) return;
  uint64_t base = *bar_address + kNotifyOffset;
  for (uint16_t q = 0; q < num_queues(); ++q) {
    // Linux and the spec's driver write the 16-bit queue index (§4.1.5.2).
    if (auto r = ioevents_.bind_ioevent(base + q * kNotifyOffMultiplier, 2, queue_events_[q].get());
        !r) {
      LOG_WARN("virtio-pci {}: queue {} notifications will exit to the VMM: {}", device_->name(), q,
               r.error().what());
      for (uint16_t u = 0; u < q; ++u)
        ioevents_.unbind_ioevent(base + u * kNotifyOffMultiplier, 2, queue_events_[u].get());
      return;
    }
  }
  notify_base_ = base;
}

// --- common configuration (§4.1.4.3)
void VirtioPciDevice::common_read(uint64_t offset, std::span<uint8_t> data) {
  if (offset + data.size() > kCommonCfgSize || offset % data.size() != 0) return;
  std::lock_guard lock(mu_);
  uint8_t regs[kCommonCfgSize] = {};
  auto put = [&](uint64_t at, auto v) { std::memcpy(regs + at, &v, sizeof(v)); };
  put(kCfgDeviceFeatureSelect, device_feature_select_);
  uint64_t feat = device_->device_features();
  put(kCfgDeviceFeature, device_feature_select_ == 0   ? static_cast<uint32_t>(feat)
                         : device_feature_select_ == 1 ? static_cast<uint32_t>(feat >> 32)
                                                       : uint32_t{0});
  put(kCfgDriverFeatureSelect, driver_feature_select_);
  put(kCfgDriverFeature, driver_feature_select_ == 0 ? static_cast<uint32_t>(driver_features_)
                         : driver_feature_select_ == 1
                             ? static_cast<uint32_t>(driver_features_ >> 32)
                             : uint32_t{0});
  put(kCfgMsixConfig, config_vector_.load());
  put(kCfgNumQueues, num_queues());
  put(kCfgDeviceStatus, device_->status());
  put(kCfgConfigGeneration, static_cast<uint8_t>(device_->config_generation()));
  put(kCfgQueueSelect, queue_select_);
  if (Queue* q = device_->queue(queue_select_)) {
    // queue_size reads the maximum until the driver writes a smaller one
    // (§4.1.4.3.1: "On reset, specifies the maximum queue size").
    put(kCfgQueueSize, q->size());
    put(kCfgQueueMsixVector, queue_vectors_[queue_select_].load());
    put(kCfgQueueEnable, static_cast<uint16_t>(q->ready() ? 1 : 0));
    put(kCfgQueueNotifyOff, queue_select_);
    put(kCfgQueueDesc, q->desc_table());
    put(kCfgQueueDriver, q->avail_ring());
    put(kCfgQueueDevice, q->used_ring());
  }  // an unavailable queue reads size 0 (§4.1.4.3.2)
  std::memcpy(data.data(), regs + offset, data.size());
}

void VirtioPciDevice::common_write(uint64_t offset, std::span<const uint8_t> data) {
  size_t n = data.size();
  if (offset + n > kCommonCfgSize || offset % n != 0) return;
  std::lock_guard lock(mu_);
  auto u16 = [&] { return load_le<uint16_t>(data); };
  auto u32 = [&] { return load_le<uint32_t>(data); };
  auto vector = [&](uint16_t v) {
    return v < msix_.num_vectors() ? v : kVirtioMsiNoVector;  // §4.1.5.1.2.1
  };
  if (n == 4 && offset == kCfgDeviceFeatureSelect) {
    device_feature_select_ = u32();
  } else if (n == 4 && offset == kCfgDriverFeatureSelect) {
    driver_feature_select_ = u32();
  } else if (n == 4 && offset == kCfgDriverFeature) {
    if (device_->status() & kStatusFeaturesOk) return;  // §2.2.2: fixed after FEATURES_OK
    if (driver_feature_select_ > 1) return;
    unsigned shift = driver_feature_select_ * 32;
    driver_features_ = (driver_features_ & ~(0xffffffffull << shift)) | (uint64_t{u32()} << shift);
    device_->set_driver_features(driver_features_);
  } else if (n == 2 && offset == kCfgMsixConfig) {
    config_vector_ = vector(u16());
  } else if (n == 1 && offset == kCfgDeviceStatus) {
    write_status(data[0]);
  } else if (n == 2 && offset == kCfgQueueSelect) {
    queue_select_ = u16();
  } else if (n == 2 && offset == kCfgQueueReset) {
    if (u16() == 1) reset_queue_locked(queue_select_);  // §4.1.4.3.2: writing 0 does nothing
  } else if (offset >= kCfgQueueSize) {
    Queue* q = device_->queue(queue_select_);
    // §4.1.4.3.2: the driver MUST NOT change a queue once enabled; after
    // DRIVER_OK only a queue it reset (RING_RESET, §2.6.1.2) or never
    // enabled may be set up.
    bool driver_ok = (device_->status() & kStatusDriverOk) != 0;
    if (q == nullptr || q->ready() || (driver_ok && !device_->negotiated(kFeatureRingReset)))
      return;
    auto set64 = [&](uint64_t field, uint64_t cur) -> std::optional<uint64_t> {
      if (n == 8 && offset == field) return load_le<uint64_t>(data);
      if (n == 4 && offset == field) return (cur & ~0xffffffffull) | u32();
      if (n == 4 && offset == field + 4) return (cur & 0xffffffffull) | uint64_t{u32()} << 32;
      return std::nullopt;
    };
    if (n == 2 && offset == kCfgQueueSize) {
      q->set_size(u16());  // checked against max_size and power of two at DRIVER_OK
    } else if (n == 2 && offset == kCfgQueueMsixVector) {
      queue_vectors_[queue_select_] = vector(u16());
    } else if (n == 2 && offset == kCfgQueueEnable) {
      if (u16() != 1) return;  // writing 0 is not allowed (§4.1.4.3.2)
      q->set_ready(true);
      // Before DRIVER_OK, activate() starts it; after, it starts now.
      if (driver_ok) (void)device_->enable_queue(queue_select_);  // failure: NEEDS_RESET
    } else if (auto v = set64(kCfgQueueDesc, q->desc_table())) {
      q->set_desc_table(*v);
    } else if (auto v2 = set64(kCfgQueueDriver, q->avail_ring())) {
      q->set_avail_ring(*v2);
    } else if (auto v3 = set64(kCfgQueueDevice, q->used_ring())) {
      q->set_used_ring(*v3);
    }
  }
}

void VirtioPciDevice::write_status(uint8_t status) {
  if (status == 0) {
    // §4.1.4.3.1 / §2.4: reset returns the device and the transport to
    // their power-on state; the driver reads 0 back when it is done.
    device_->reset();
    reset_transport_locked();
    return;
  }
  device_->set_status(status);
}

void VirtioPciDevice::reset_transport_locked() {
  device_feature_select_ = 0;
  driver_feature_select_ = 0;
  driver_features_ = 0;
  queue_select_ = 0;
  config_vector_ = kVirtioMsiNoVector;
  for (uint16_t q = 0; q < num_queues(); ++q) {
    queue_vectors_[q] = kVirtioMsiNoVector;
    (void)queue_events_[q].consume();  // drop notifications for the old rings
    if (Queue* queue = device_->queue(q)) queue->set_size(queue->max_size());
  }
  if (isr_.exchange(0) && intx_) intx_->set_level(false);
}

void VirtioPciDevice::reset_queue_locked(uint16_t q) {
  // Not negotiated, before FEATURES_OK or no such queue: ignored.
  if (!device_->reset_queue(q)) return;
  queue_vectors_[q] = kVirtioMsiNoVector;
  (void)queue_events_[q].consume();  // notifications meant for the old ring
}

void VirtioPciDevice::process_queue(uint16_t q) {
  notifies_.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lock(mu_);
  device_->process_queue(q);
}

void VirtioPciDevice::interrupt(InterruptKind kind, uint16_t queue) {
  if (msix_.enabled()) {
    uint16_t v = kind == InterruptKind::kUsedBuffer
                     ? (queue < num_queues() ? queue_vectors_[queue].load() : kVirtioMsiNoVector)
                     : config_vector_.load();
    if (v != kVirtioMsiNoVector) msix_.notify(v);
    return;
  }
  // §4.1.4.5: bit 0 queue interrupt, bit 1 configuration change.
  isr_.fetch_or(kind == InterruptKind::kUsedBuffer ? 1 : 2);
  if (intx_ && !intx_disabled_.load()) intx_->set_level(true);
}

void VirtioPciDevice::reset() {
  std::lock_guard lock(mu_);
  device_->reset();
  reset_transport_locked();
  msix_.reset();
  intx_disabled_ = false;  // the root reset Command to 0
}

}  // namespace skiff::virtio
