// InputPump: a thread that waits for input on a host fd (stdin, a pty
// master) and hands each chunk to a callback — typically
// Serial16550::enqueue_input. Stopped through an eventfd; the destructor
// stops and joins it (RAII), so the callback's target must outlive the pump.
//
// The thread ends by itself at end of input (EOF) or on an error or hang-up
// of the fd, logging why; it never spins on a dead fd.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <thread>

#include "base/fd.h"
#include "base/result.h"

namespace skiff {

class InputPump {
 public:
  using Callback = std::function<void(std::span<const uint8_t>)>;

  // fd is borrowed and must stay open until the pump is destroyed.
  // thread_name is at most 15 characters (Linux limit).
  static Result<std::unique_ptr<InputPump>> start(int fd, Callback callback,
                                                  std::string thread_name = "serial-in");
  ~InputPump();
  InputPump(const InputPump&) = delete;
  InputPump& operator=(const InputPump&) = delete;

 private:
  InputPump(int fd, Callback callback, EventFd stop, std::string name)
      : fd_(fd), callback_(std::move(callback)), stop_(std::move(stop)), name_(std::move(name)) {}
  void run();

  int fd_;
  Callback callback_;
  EventFd stop_;
  std::string name_;
  std::thread thread_;
};

}  // namespace skiff
