// VirtioWorker: the I/O thread of one virtio device on the PCI transport.
// It sleeps in epoll over the device's queue kick eventfds (the ioeventfds
// KVM signals when the guest notifies a queue) and its backend fds, and
// runs the device's handler for the queue concerned:
//  - a kick: the eventfd is read (reset), then `process(queue)`;
//  - a backend fd (virtio::BackendEvent): watched for its `events`,
//    edge-triggered, so `process(queue)` runs once per edge and the device
//    drains the fd itself (a tap with frames to read, a full tap with room
//    again).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "virtio/device.h"

namespace skiff {

class VirtioWorker {
 public:
  // Starts the thread (named `name`). `queue_fds[q]` is queue q's kick
  // eventfd; every fd must stay open while the worker runs.
  [[nodiscard]] static Result<std::unique_ptr<VirtioWorker>> start(
      std::string name, std::vector<int> queue_fds, std::vector<virtio::BackendEvent> backend,
      std::function<void(uint16_t)> process);
  // Stops and joins the thread.
  ~VirtioWorker();
  VirtioWorker(const VirtioWorker&) = delete;
  VirtioWorker& operator=(const VirtioWorker&) = delete;

 private:
  VirtioWorker(std::string name, std::vector<int> queue_fds,
               std::vector<virtio::BackendEvent> backend, std::function<void(uint16_t)> process)
      : name_(std::move(name)),
        queue_fds_(std::move(queue_fds)),
        backend_(std::move(backend)),
        process_(std::move(process)) {}
  [[nodiscard]] Result<> watch(int fd, uint32_t token, uint32_t events);
  void run();

  std::string name_;
  std::vector<int> queue_fds_;
  std::vector<virtio::BackendEvent> backend_;
  std::function<void(uint16_t)> process_;
  Fd epoll_;
  EventFd stop_;
  std::thread thread_;
};

}  // namespace skiff
