// VirtioPciDevice: the virtio 1.x modern PCI transport (virtio 1.2 §4.1)
// around one transport-agnostic VirtioDevice.
//
// PCI identity (§4.1.2): vendor 0x1af4, device 0x1040 + virtio device id,
// revision 1 (non-transitional, no legacy I/O BAR), INTA#.
//
// One 64-bit memory BAR 0 (32 KiB), one 4 KiB page per structure so that
// ioeventfds and MSI-X never share a page with registers that exit:
//   0x0000 common configuration   (§4.1.4.3)
//   0x1000 ISR status             (§4.1.4.5; reading clears it, lowers INTx;
//                                  PCI Status bit 3 reads "ISR not 0")
//   0x2000 device-specific config (§4.1.4.6; forwarded to the device)
//   0x3000 notifications          (§4.1.4.4; queue i at 0x3000 + 4 * i,
//                                  notify_off_multiplier 4)
//   0x4000 MSI-X table, 0x6000 PBA (one vector per queue + one for config)
// Capabilities: MSI-X, then the vendor-specific virtio structures (common,
// notify, ISR, device — the last only if the device has config space) and
// the PCI configuration access window (§4.1.4.9).
//
// Notifications: each queue has an eventfd. The vmm binds it (KVM_IOEVENTFD)
// to the queue's notify address whenever BAR 0 decodes, so a driver's
// notify never exits to userspace; a notify that does reach bar_write (no
// ioeventfd support, other access size) signals the same eventfd. The
// vmm's device thread waits on those eventfds and calls process_queue().
//
// Interrupts: with MSI-X enabled, a used-buffer interrupt goes to the
// queue's vector and a config change to msix_config (VIRTIO_MSI_NO_VECTOR:
// none, §4.1.5.1.2); without MSI-X, the ISR bit is set and INTx raised.
//
// Guest values are checked here: vectors beyond the table read back
// NO_VECTOR (§4.1.5.1.2.1), queue fields are read-only once the queue is
// enabled or the driver is OK, unaligned or odd-sized register accesses are
// ignored (§4.1.3.1: the driver MUST access each field with its width;
// 64-bit fields may be written as two 32-bit halves). Ring addresses are
// checked by the device at DRIVER_OK: bad ones put it in NEEDS_RESET.
//
// Virtqueue reset (VIRTIO_F_RING_RESET, §2.6.1, offered for devices whose
// supports_queue_reset() says yes): writing 1 to queue_reset finishes or
// drops the queue's in-flight requests (VirtioDevice::reset_queue), returns
// the queue, its MSI-X vector and its pending notifications to the power-on
// state and completes before the write returns, so queue_reset reads 0 and
// queue_enable 0 afterwards (§4.1.4.3.2). The driver may then set the queue
// up again (new size, rings, vector) and write queue_enable = 1 while the
// device runs; the rings are checked then (bad ones: NEEDS_RESET).
//
// Missing: VIRTIO_F_NOTIFICATION_DATA (queue_notify_data reads 0), packed
// rings, save/restore.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "devices/interrupt.h"
#include "devices/pci/msix.h"
#include "devices/pci/pci_device.h"
#include "memory/guest_memory.h"
#include "virtio/device.h"

namespace skiff::virtio {

inline constexpr uint16_t kVirtioPciVendorId = 0x1af4;
inline constexpr uint16_t kVirtioPciDeviceIdBase = 0x1040;
inline constexpr uint16_t kVirtioMsiNoVector = 0xffff;

// Capability cfg_type values (§4.1.4).
inline constexpr uint8_t kVirtioPciCapCommonCfg = 1;
inline constexpr uint8_t kVirtioPciCapNotifyCfg = 2;
inline constexpr uint8_t kVirtioPciCapIsrCfg = 3;
inline constexpr uint8_t kVirtioPciCapDeviceCfg = 4;
inline constexpr uint8_t kVirtioPciCapPciCfg = 5;

// BAR 0 layout (see above).
inline constexpr uint64_t kVirtioPciBarSize = 0x8000;
inline constexpr uint64_t kCommonCfgOffset = 0x0000;
inline constexpr uint64_t kCommonCfgSize = 0x3c;  // up to queue_reset (virtio 1.2)
inline constexpr uint64_t kIsrOffset = 0x1000;
inline constexpr uint64_t kDeviceCfgOffset = 0x2000;
inline constexpr uint64_t kNotifyOffset = 0x3000;
inline constexpr uint32_t kNotifyOffMultiplier = 4;
inline constexpr uint64_t kMsixTableOffset = 0x4000;
inline constexpr uint64_t kMsixPbaOffset = 0x6000;

// Common configuration registers (§4.1.4.3, struct virtio_pci_common_cfg).
inline constexpr uint64_t kCfgDeviceFeatureSelect = 0x00;
inline constexpr uint64_t kCfgDeviceFeature = 0x04;
inline constexpr uint64_t kCfgDriverFeatureSelect = 0x08;
inline constexpr uint64_t kCfgDriverFeature = 0x0c;
inline constexpr uint64_t kCfgMsixConfig = 0x10;
inline constexpr uint64_t kCfgNumQueues = 0x12;
inline constexpr uint64_t kCfgDeviceStatus = 0x14;
inline constexpr uint64_t kCfgConfigGeneration = 0x15;
inline constexpr uint64_t kCfgQueueSelect = 0x16;
inline constexpr uint64_t kCfgQueueSize = 0x18;
inline constexpr uint64_t kCfgQueueMsixVector = 0x1a;
inline constexpr uint64_t kCfgQueueEnable = 0x1c;
inline constexpr uint64_t kCfgQueueNotifyOff = 0x1e;
inline constexpr uint64_t kCfgQueueDesc = 0x20;
inline constexpr uint64_t kCfgQueueDriver = 0x28;
inline constexpr uint64_t kCfgQueueDevice = 0x30;
inline constexpr uint64_t kCfgQueueNotifyData = 0x38;  // read-only, 0 (no NOTIF_CONFIG_DATA)
inline constexpr uint64_t kCfgQueueReset = 0x3a;       // VIRTIO_F_RING_RESET

class VirtioPciDevice final : public pci::PciDevice {
 public:
  // `mem`, `msi`, `ioevents` and `intx` (may be null: no INTx) must outlive
  // the returned device. `intx_line` is written to Interrupt Line.
  [[nodiscard]] static Result<std::shared_ptr<VirtioPciDevice>> create(
      std::unique_ptr<VirtioDevice> device, const GuestMemory& mem, pci::MsiSender& msi,
      pci::IoEventRegistrar& ioevents, IrqLine* intx, uint8_t intx_line);
  ~VirtioPciDevice() override;

  [[nodiscard]] VirtioDevice& device() { return *device_; }
  [[nodiscard]] uint16_t num_queues() const { return device_->num_queues(); }
  // The eventfd the driver's notifications of queue `q` signal.
  [[nodiscard]] int queue_eventfd(uint16_t q) const { return queue_events_[q].get(); }
  // Device thread: the driver notified queue `q`.
  void process_queue(uint16_t q);

  [[nodiscard]] const pci::Msix& msix() const { return msix_; }

  // Queue notifications processed, and how many of them reached the VMM as
  // MMIO exits instead of through the ioeventfd (0 when KVM_IOEVENTFD works).
  struct NotifyCounters {
    uint64_t notifies = 0;
    uint64_t notify_exits = 0;
  };
  [[nodiscard]] NotifyCounters notify_counters() const {
    return {notifies_.load(std::memory_order_relaxed),
            notify_exits_.load(std::memory_order_relaxed)};
  }
  [[nodiscard]] uint8_t isr() const { return isr_.load(); }

  // pci::PciDevice
  pci::PciConfigSpace& config() override { return config_; }
  void config_reading(uint16_t offset, size_t size) override;
  void config_written(uint16_t offset, size_t size) override;
  void bar_read(unsigned bar, uint64_t offset, std::span<uint8_t> data) override;
  void bar_write(unsigned bar, uint64_t offset, std::span<const uint8_t> data) override;
  void bar_mapped(unsigned bar, std::optional<uint64_t> address) override;
  void reset() override;

 private:
  VirtioPciDevice(std::unique_ptr<VirtioDevice> device, const GuestMemory& mem, pci::MsiSender& msi,
                  pci::IoEventRegistrar& ioevents, IrqLine* intx);
  [[nodiscard]] Result<> build_config_space(uint8_t intx_line);
  [[nodiscard]] Result<uint16_t> add_virtio_cap(uint8_t cfg_type, uint8_t cap_len, uint64_t offset,
                                                uint64_t length);

  void common_read(uint64_t offset, std::span<uint8_t> data);
  void common_write(uint64_t offset, std::span<const uint8_t> data);
  void write_status(uint8_t status);
  void reset_transport_locked();
  void reset_queue_locked(uint16_t q);
  void interrupt(InterruptKind kind, uint16_t queue);
  void bind_notifications(std::optional<uint64_t> bar_address);

  std::unique_ptr<VirtioDevice> device_;
  const GuestMemory& mem_;
  pci::IoEventRegistrar& ioevents_;
  IrqLine* intx_;
  pci::PciConfigSpace config_;
  pci::Msix msix_;
  uint16_t pci_cfg_cap_ = 0;  // offset of the configuration access window

  // Serialises the driver's register accesses (vCPU threads) with queue
  // processing (device thread).
  std::mutex mu_;
  uint32_t device_feature_select_ = 0;
  uint32_t driver_feature_select_ = 0;
  uint64_t driver_features_ = 0;
  uint16_t queue_select_ = 0;
  std::atomic<uint16_t> config_vector_{kVirtioMsiNoVector};
  std::unique_ptr<std::atomic<uint16_t>[]> queue_vectors_;
  std::atomic<uint8_t> isr_{0};
  std::atomic<bool> intx_disabled_{false};
  std::vector<EventFd> queue_events_;
  std::optional<uint64_t> notify_base_;
  std::atomic<uint64_t> notifies_{0};
  std::atomic<uint64_t> notify_exits_{0};  // guest address the eventfds are bound at
};

}  // namespace skiff::virtio
