// VhostUserBackend: the back-end (formerly "slave") side of vhost-user
// (specs/vhost-user.rst) for one transport-agnostic VirtioDevice. It turns
// the front end's messages into the device's transport calls: features,
// guest memory (MemoryTable), queue size/addresses/positions, and one
// VringWorker thread per started ring whose kicks run the device's queue
// handler. Interrupts go back by writing the ring's call eventfd, only when
// the Queue says the driver wants one (EVENT_IDX or NO_INTERRUPT, virtio
// 1.2 §2.7.10); a device that needs a reset signals every ring's err fd.
//
// Ring life cycle ("Ring states"): a ring starts when SET_VRING_KICK
// arrives (size, addresses and memory must be known by then) and stops on
// GET_VRING_BASE, which answers the next available index. With
// VHOST_USER_F_PROTOCOL_FEATURES a ring starts disabled until
// SET_VRING_ENABLE 1; a disabled ring is not processed (blk and rng have no
// side-effect-free way to process). The device is activated when its first
// ring starts and reset when its last ring stops, so a restarted front end
// renegotiates from scratch.
//
// Hostile front ends: every index, size, address and fd count is checked;
// a violation returns an Error from serve(), the caller closes the
// connection with one log line, and reset() returns everything (threads,
// mappings, fds) so the next connection starts clean.
//
// Threading: messages are handled on the caller's thread; ring workers
// only call process_queue() and the interrupt callback. Every change to a
// started ring's configuration stops its worker first.
//
// Not implemented: dirty logging (LOG_ALL), inflight tracking
// (INFLIGHT_SHMFD), back-end-initiated messages (SLAVE_REQ, so no config
// change interrupts), CONFIGURE_MEM_SLOTS, packed rings, IOMMU.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "vhost_user/memory_table.h"
#include "vhost_user/message.h"
#include "vhost_user/vring_worker.h"
#include "virtio/device.h"

namespace skiff::vhost_user {

class VhostUserBackend {
 public:
  explicit VhostUserBackend(virtio::VirtioDevice& device);
  ~VhostUserBackend();
  VhostUserBackend(const VhostUserBackend&) = delete;
  VhostUserBackend& operator=(const VhostUserBackend&) = delete;

  // Serves one connection until the front end hangs up (success), a
  // protocol error (the Error says why; the caller closes the socket), or
  // `stop_fd` becomes readable (success). Call reset() afterwards.
  [[nodiscard]] Result<> serve(int sock, int stop_fd);

  // Handles one message, sending its reply (or REPLY_ACK) on `sock`.
  [[nodiscard]] Result<> handle(int sock, Message& msg);

  // Back to the state before any connection: rings stopped, device reset,
  // memory unmapped, fds closed, features forgotten.
  void reset();

  [[nodiscard]] bool ring_started(uint16_t index) const { return rings_[index]->worker != nullptr; }

 private:
  struct Ring {
    uint32_t num = 0;
    std::optional<VringAddr> addr;
    uint16_t base = 0;
    Fd kick;
    std::mutex call_mu;  // workers write `call`/`err`, the socket thread replaces them
    Fd call;
    Fd err;
    std::atomic<bool> enabled{false};
    bool enable_set = false;
    std::unique_ptr<VringWorker> worker;  // set while the ring is started
  };

  // Handlers return the reply payload for requests that have one.
  using Reply = std::optional<std::vector<uint8_t>>;
  [[nodiscard]] Result<Reply> dispatch(Message& msg, uint64_t& ack_status);
  [[nodiscard]] Result<Ring*> ring_at(uint32_t index, std::string_view what);
  [[nodiscard]] Result<> set_mem_table(Message& msg);
  [[nodiscard]] Result<> set_vring_fd(Message& msg, Request which);
  [[nodiscard]] Result<Reply> get_config(const Message& msg);
  [[nodiscard]] Result<> set_config(const Message& msg, uint64_t& ack_status);
  [[nodiscard]] Result<> start_ring(uint16_t index);
  // Stops the worker; returns the next available index for GET_VRING_BASE.
  uint16_t stop_ring(uint16_t index);
  void stop_all_rings();
  void interrupt(virtio::InterruptKind kind, uint16_t queue);

  virtio::VirtioDevice& device_;
  std::vector<std::unique_ptr<Ring>> rings_;
  std::unique_ptr<MemoryTable> memory_;
  uint64_t acked_features_ = 0;
  bool features_set_ = false;
  uint64_t protocol_features_ = 0;
};

}  // namespace skiff::vhost_user
