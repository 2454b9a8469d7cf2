// VringWorker: the I/O thread of one started vhost-user ring. It sleeps in
// epoll on the ring's kick eventfd (the front end's "buffers available"
// notification, specs/vhost-user.rst "Ring states") and on a wake eventfd
// used to stop it or to make it look at the ring again (ring enabled, ring
// restarted with buffers already pending). Each wake-up calls `process`,
// which runs the device's queue handler on this thread.
//
// Thread names follow DESIGN.md "Threads": `blk-q0`, `rng-q0`, ...
// RAII: the destructor stops and joins the thread.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <thread>

#include "base/fd.h"
#include "base/result.h"

namespace skiff::vhost_user {

class VringWorker {
 public:
  // A backend fd and what to watch it for, edge-triggered
  // (virtio::BackendEvent's fd and events).
  struct BackendFd {
    int fd;
    uint32_t events;
  };
  // Starts the thread; `kick_fd` and `backend_fds` must stay open while the
  // worker runs. `process` runs once right away, then after every kick,
  // wake() or edge on a backend fd (the device drains those itself).
  [[nodiscard]] static Result<std::unique_ptr<VringWorker>> start(
      std::string name, int kick_fd, std::function<void()> process,
      std::span<const BackendFd> backend_fds = {});
  ~VringWorker();
  VringWorker(const VringWorker&) = delete;
  VringWorker& operator=(const VringWorker&) = delete;

  // Makes the thread call `process` again soon.
  void wake() { wake_.signal(); }

 private:
  VringWorker(std::string name, int kick_fd, std::function<void()> process, EventFd wake, Fd ep);
  void loop();

  std::string name_;
  int kick_fd_;
  std::function<void()> process_;
  EventFd wake_;
  Fd epoll_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace skiff::vhost_user
