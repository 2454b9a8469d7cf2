// VirtioConsole: the virtio console device (virtio 1.2 §5.3), one port.
//
// Queues (§5.3.2): 0 receiveq (host -> guest input), 1 transmitq (guest ->
// host output) of port 0. Without VIRTIO_CONSOLE_F_MULTIPORT there are no
// control queues and port 0 is the console (Linux: hvc0).
//
// Features (§5.3.3): F_SIZE only when the vmm layer knows a terminal size
// (cols/rows filled in config space); F_EMERG_WRITE always — a config write
// to emerg_wr sends one byte to the host without any queue, which is how
// Linux prints early or panic output. MULTIPORT is not offered.
//
// Output: every byte of every transmitq chain goes, in order, to the
// `output` callback (the vmm layer wires it to a CharBackend). The used
// length is 0: the device writes nothing into a transmit buffer.
//
// Input arrives on another thread (the vmm's InputPump reading stdin or a
// pty). enqueue_input() appends it to a bounded buffer (kMaxPendingInput;
// bytes beyond it are dropped and counted, like the 16550's FIFO) and
// signals an eventfd that backend_events() exposes for the receiveq, so
// the transport's I/O thread copies pending input into the buffers the
// driver posted. A receive buffer is only taken when input is pending, so
// posted buffers wait in the ring until there is something to put in them.
//
// Hostile guest (§5.3.6.1: the driver MUST NOT put a device-readable buffer
// in a receiveq, nor a device-writable one in a transmitq): either one
// puts the device into NEEDS_RESET. Chain lengths and addresses are
// checked by Queue; one transmit pass handles at most one ring's worth of
// chains (kMaxChainsPerPass) so a driver that refills the ring as fast as
// it is drained cannot keep the I/O thread from its other events.
//
// Missing: MULTIPORT (control queues, named ports), terminal resize
// (SIGWINCH -> config change), save/restore.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>

#include "base/fd.h"
#include "virtio/device.h"

namespace skiff::virtio {

inline constexpr uint32_t kVirtioIdConsole = 3;  // VIRTIO_ID_CONSOLE

// Feature bits (§5.3.3).
inline constexpr unsigned kConsoleFeatureSize = 0;        // VIRTIO_CONSOLE_F_SIZE
inline constexpr unsigned kConsoleFeatureMultiport = 1;   // VIRTIO_CONSOLE_F_MULTIPORT
inline constexpr unsigned kConsoleFeatureEmergWrite = 2;  // VIRTIO_CONSOLE_F_EMERG_WRITE

// Config layout (§5.3.4, struct virtio_console_config).
inline constexpr uint64_t kConsoleCfgCols = 0;        // le16
inline constexpr uint64_t kConsoleCfgRows = 2;        // le16
inline constexpr uint64_t kConsoleCfgMaxNrPorts = 4;  // le32
inline constexpr uint64_t kConsoleCfgEmergWr = 8;     // le32
inline constexpr uint64_t kConsoleCfgSize = 12;

inline constexpr uint16_t kConsoleReceiveQueue = 0;
inline constexpr uint16_t kConsoleTransmitQueue = 1;

struct ConsoleSize {
  uint16_t cols;
  uint16_t rows;
};

class VirtioConsole final : public VirtioDevice {
 public:
  static constexpr uint16_t kQueueSize = 256;
  static constexpr size_t kMaxPendingInput = 64 * 1024;
  static constexpr uint32_t kMaxChainsPerPass = kQueueSize;

  using Output = std::function<void(std::span<const uint8_t>)>;

  // output: where guest bytes go (called from the I/O thread, or a vCPU
  // thread for emergency writes). size: the terminal size to offer with
  // F_SIZE, if known.
  [[nodiscard]] static Result<std::unique_ptr<VirtioConsole>> create(
      Output output, std::optional<ConsoleSize> size = std::nullopt);

  // Host input for the guest; any thread. Never blocks.
  void enqueue_input(std::span<const uint8_t> bytes);

  [[nodiscard]] std::vector<BackendEvent> backend_events() const override {
    return {{input_event_.get(), kConsoleReceiveQueue}};
  }

  struct Counters {
    uint64_t tx_bytes = 0;             // guest -> host, queue and emergency writes
    uint64_t rx_bytes = 0;             // host -> guest, delivered into receive buffers
    uint64_t dropped_input_bytes = 0;  // host input beyond kMaxPendingInput
  };
  [[nodiscard]] Counters counters() const;
  [[nodiscard]] size_t pending_input() const;

 protected:
  [[nodiscard]] Result<> handle_queue(uint16_t index, Queue& queue) override;
  [[nodiscard]] Result<> on_config_write(uint64_t offset, std::span<const uint8_t> in) override;

 private:
  VirtioConsole(Output output, std::optional<ConsoleSize> size, EventFd input_event);
  [[nodiscard]] Result<> transmit(Queue& queue);
  [[nodiscard]] Result<> receive(Queue& queue);

  Output output_;
  EventFd input_event_;
  // One per queue: a vhost-user transport may serve each queue on its own thread.
  DescriptorChain rx_chain_;
  DescriptorChain tx_chain_;

  mutable std::mutex input_mu_;
  std::deque<uint8_t> input_;  // guarded by input_mu_

  std::atomic<uint64_t> tx_bytes_{0};
  std::atomic<uint64_t> rx_bytes_{0};
  std::atomic<uint64_t> dropped_input_{0};
};

}  // namespace skiff::virtio
