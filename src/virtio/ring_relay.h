// RingRelay: skiff's side of a virtqueue whose ring someone else serves —
// a vhost-user back end (vhost_user/frontend_blk.h) or the kernel's
// vhost-net (virtio/devices/vhost_net_device.h). skiff keeps the transport
// and relays notifications through the device thread, one extra hop each
// way:
//   guest notify -> ioeventfd -> device thread -> relay() writes the kick
//     eventfd (only for buffers the server was not kicked for yet);
//   server's call eventfd (a BackendEvent) -> device thread -> relay()
//     drains it and says "interrupt the driver".
// The server has applied the driver's interrupt suppression (§2.7.10)
// before it writes the call fd, so every call is forwarded; relay()
// restates the used position in the Queue so VirtioDevice::signal_used()
// agrees (queue.h needs_notification).
//
// The err eventfd is the server's "this ring failed" (vhost's vq_err: a
// descriptor it could not translate): relay() returns it as an error, which
// puts the device into NEEDS_RESET.
#pragma once

#include <cstdint>

#include "base/fd.h"
#include "base/result.h"
#include "memory/guest_memory.h"
#include "virtio/queue.h"

namespace skiff::virtio {

class RingRelay {
 public:
  // Host user addresses of a ring's areas (what vhost calls the ring
  // addresses).
  struct Addresses {
    uint64_t desc;
    uint64_t used;
    uint64_t avail;
  };

  // The three eventfds (non-blocking).
  [[nodiscard]] static Result<RingRelay> create();

  [[nodiscard]] int kick_fd() const { return kick_.get(); }
  [[nodiscard]] int call_fd() const { return call_.get(); }
  [[nodiscard]] int err_fd() const { return err_.get(); }
  [[nodiscard]] bool started() const { return avail_idx_ != nullptr; }

  // Where an active queue's ring areas are in this process (Queue::activate
  // has checked them against `mem`).
  [[nodiscard]] static Result<Addresses> addresses(const GuestMemory& mem, const Queue& q);

  // Before the server is given the fds: forget stale signals.
  void drain();
  // The server has the ring from q.next_avail() on: relay from now on, and
  // kick at once for buffers made available before (at DRIVER_OK they got
  // no notification of their own).
  void start(const Addresses& a, const Queue& q);
  // The server has let go of the ring.
  void stop();

  // The device thread's work for this queue: the server's error, its call
  // (true: raise the used-buffer interrupt, after restating the used
  // position in `q`), and a kick for buffers it was not told about.
  [[nodiscard]] Result<bool> relay(Queue& q);

 private:
  RingRelay(EventFd kick, EventFd call, EventFd err)
      : kick_(std::move(kick)), call_(std::move(call)), err_(std::move(err)) {}

  EventFd kick_;
  EventFd call_;
  EventFd err_;
  // Host views of avail->idx and used->idx while started.
  const uint16_t* avail_idx_ = nullptr;
  const uint16_t* used_idx_ = nullptr;
  uint16_t kicked_avail_ = 0;  // the avail idx the server was last kicked for
};

}  // namespace skiff::virtio
