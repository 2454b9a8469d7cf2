// VirtioRng: the virtio entropy device (virtio 1.2 §5.4). One queue; the
// driver posts writable buffers and the device fills them with random
// bytes from getrandom(2), or from a configured source file such as
// /dev/urandom (`--rng src=PATH`).
//
// §5.4.6.1: the driver MUST NOT place driver-readable buffers in the queue;
// a chain with readable buffers puts the device into NEEDS_RESET. A request
// is filled up to kMaxFillBytes (the used length tells the driver how much
// it got, §5.4.6.2 lets the device write fewer bytes), so one huge chain
// cannot keep the device thread busy. If the source fails, the buffer is
// returned with length 0 rather than failing the device.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "base/fd.h"
#include "virtio/device.h"

namespace skiff::virtio {

inline constexpr uint32_t kVirtioIdRng = 4;  // VIRTIO_ID_RNG

class VirtioRng final : public VirtioDevice {
 public:
  static constexpr uint16_t kQueueSize = 256;
  static constexpr uint64_t kMaxFillBytes = 1 << 20;

  // source: a file to read from; nothing means getrandom(2).
  [[nodiscard]] static Result<std::unique_ptr<VirtioRng>> create(
      const std::optional<std::string>& source);

 protected:
  [[nodiscard]] Result<> handle_queue(uint16_t index, Queue& queue) override;
  // Requests complete inside handle_queue: nothing outlives a queue reset.
  [[nodiscard]] bool supports_queue_reset() const override { return true; }

 private:
  explicit VirtioRng(Fd source);
  // Fills `out` as far as the source allows; returns bytes written.
  size_t fill(std::span<uint8_t> out);

  Fd source_;  // invalid: use getrandom
  DescriptorChain chain_;
};

}  // namespace skiff::virtio
