#include "virtio/devices/console.h"

#include <sys/eventfd.h>

#include <algorithm>
#include <cstring>

namespace skiff::virtio {

namespace {

void put_le16(std::vector<uint8_t>& cfg, uint64_t off, uint16_t v) {
  cfg[off] = static_cast<uint8_t>(v);
  cfg[off + 1] = static_cast<uint8_t>(v >> 8);
}

void put_le32(std::vector<uint8_t>& cfg, uint64_t off, uint32_t v) {
  for (unsigned i = 0; i < 4; ++i) cfg[off + i] = static_cast<uint8_t>(v >> (8 * i));
}

}  // namespace

Result<std::unique_ptr<VirtioConsole>> VirtioConsole::create(Output output,
                                                             std::optional<ConsoleSize> size) {
  if (!output) return fail("virtio-console: no output callback");
  // Non-blocking: the I/O thread drains it with consume() on every pass.
  EventFd ev = SKIFF_TRY(EventFd::create(0, EFD_NONBLOCK));
  return std::unique_ptr<VirtioConsole>(new VirtioConsole(std::move(output), size, std::move(ev)));
}

VirtioConsole::VirtioConsole(Output output, std::optional<ConsoleSize> size, EventFd input_event)
    : VirtioDevice(
          kVirtioIdConsole, "console",
          feature_bit(kConsoleFeatureEmergWrite) | (size ? feature_bit(kConsoleFeatureSize) : 0), 2,
          kQueueSize),
      output_(std::move(output)),
      input_event_(std::move(input_event)) {
  std::vector<uint8_t>& cfg = config_bytes();
  cfg.assign(kConsoleCfgSize, 0);
  if (size) {
    put_le16(cfg, kConsoleCfgCols, size->cols);
    put_le16(cfg, kConsoleCfgRows, size->rows);
  }
  // §5.3.4: max_nr_ports is only valid with MULTIPORT; 1 is the truth anyway.
  put_le32(cfg, kConsoleCfgMaxNrPorts, 1);
}

void VirtioConsole::enqueue_input(std::span<const uint8_t> bytes) {
  if (bytes.empty()) return;
  size_t taken;
  {
    std::lock_guard lock(input_mu_);
    taken = std::min(bytes.size(), kMaxPendingInput - input_.size());
    input_.insert(input_.end(), bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(taken));
  }
  if (taken < bytes.size())
    dropped_input_.fetch_add(bytes.size() - taken, std::memory_order_relaxed);
  if (taken > 0) input_event_.signal();
}

size_t VirtioConsole::pending_input() const {
  std::lock_guard lock(input_mu_);
  return input_.size();
}

VirtioConsole::Counters VirtioConsole::counters() const {
  return {tx_bytes_.load(std::memory_order_relaxed), rx_bytes_.load(std::memory_order_relaxed),
          dropped_input_.load(std::memory_order_relaxed)};
}

Result<> VirtioConsole::handle_queue(uint16_t index, Queue& queue) {
  if (index == kConsoleReceiveQueue) return receive(queue);
  if (index == kConsoleTransmitQueue) return transmit(queue);
  return {};
}

Result<> VirtioConsole::transmit(Queue& queue) {
  bool used_any = false;
  for (uint32_t n = 0; n < kMaxChainsPerPass; ++n) {
    bool got = SKIFF_TRY(queue.pop_into(tx_chain_));
    if (!got) break;
    if (tx_chain_.writable_bytes() != 0)
      return fail("transmitq chain carries {} device-writable bytes (virtio 1.2 §5.3.6.1)",
                  tx_chain_.writable_bytes());
    for (auto buf : tx_chain_.readable()) output_(buf);
    tx_bytes_.fetch_add(tx_chain_.readable_bytes(), std::memory_order_relaxed);
    // §5.3.6: nothing is written into a transmit buffer.
    SKIFF_TRY_VOID(queue.add_used(tx_chain_.head(), 0));
    used_any = true;
  }
  if (used_any) signal_used(kConsoleTransmitQueue);
  return {};
}

Result<> VirtioConsole::receive(Queue& queue) {
  input_event_.consume();  // edge-triggered: everything pending is handled below
  bool used_any = false;
  {
    std::lock_guard lock(input_mu_);
    // A buffer is only taken from the ring when there is input for it.
    while (!input_.empty()) {
      bool got = SKIFF_TRY(queue.pop_into(rx_chain_));
      if (!got) break;  // no buffer posted: the input waits for the next notify
      if (rx_chain_.readable_bytes() != 0)
        return fail("receiveq chain carries {} device-readable bytes (virtio 1.2 §5.3.6.1)",
                    rx_chain_.readable_bytes());
      uint32_t written = 0;
      for (auto buf : rx_chain_.writable()) {
        size_t take = std::min(buf.size(), input_.size());
        std::copy_n(input_.begin(), take, buf.begin());
        input_.erase(input_.begin(), input_.begin() + static_cast<ptrdiff_t>(take));
        written += static_cast<uint32_t>(take);  // <= kMaxPendingInput
        if (input_.empty()) break;
      }
      SKIFF_TRY_VOID(queue.add_used(rx_chain_.head(), written));
      rx_bytes_.fetch_add(written, std::memory_order_relaxed);
      used_any = true;
    }
  }
  if (used_any) signal_used(kConsoleReceiveQueue);
  return {};
}

Result<> VirtioConsole::on_config_write(uint64_t offset, std::span<const uint8_t> in) {
  // §5.3.4 / §5.3.6: with F_EMERG_WRITE, a write to emerg_wr sends its low
  // byte to port 0. Drivers write the 32-bit field; accept any access that
  // starts at it. Everything else is read-only.
  if (offset == kConsoleCfgEmergWr && !in.empty() && negotiated(kConsoleFeatureEmergWrite)) {
    output_(in.first(1));
    tx_bytes_.fetch_add(1, std::memory_order_relaxed);
    return {};
  }
  return VirtioDevice::on_config_write(offset, in);
}

}  // namespace skiff::virtio
