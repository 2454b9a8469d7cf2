// EventMonitor: `--event-monitor path=PATH|fd=N`. One JSON object per line
// for each lifecycle event, in Cloud Hypervisor's shape:
//   {"timestamp":{"secs":1,"nanos":234},"source":"vm","event":"booted","properties":null}
// The timestamp is the time since the monitor was opened (process start).
// A write error is logged once and further events are dropped: a reader
// that went away must not stop the VM.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "base/fd.h"
#include "base/result.h"
#include "vmm/vmm_service.h"

namespace skiff::api {

class EventMonitor {
 public:
  // path: created or appended to (a FIFO works); fd >= 0: an inherited fd.
  [[nodiscard]] static Result<std::unique_ptr<EventMonitor>> open(const std::string& path, int fd);

  void write(const VmmEvent& event);

  // The line written for `event` at `since_start` (without the newline).
  [[nodiscard]] static std::string format(const VmmEvent& event,
                                          std::chrono::nanoseconds since_start);

 private:
  explicit EventMonitor(Fd fd) : fd_(std::move(fd)) {}
  std::mutex mu_;
  Fd fd_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  bool failed_ = false;
};

}  // namespace skiff::api
