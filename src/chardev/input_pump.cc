#include "chardev/input_pump.h"

#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#include "base/log.h"

namespace skiff {

Result<std::unique_ptr<InputPump>> InputPump::start(int fd, Callback callback,
                                                    std::string thread_name) {
  if (fd < 0) return fail("input pump '{}': no input fd", thread_name);
  if (thread_name.size() > 15)
    return fail("input pump: thread name '{}' is longer than 15 characters", thread_name);
  EventFd stop = SKIFF_TRY(EventFd::create());
  std::unique_ptr<InputPump> pump(
      new InputPump(fd, std::move(callback), std::move(stop), std::move(thread_name)));
  pump->thread_ = std::thread([p = pump.get()] { p->run(); });
  return pump;
}

InputPump::~InputPump() {
  stop_.signal();
  if (thread_.joinable()) thread_.join();
}

void InputPump::run() {
  pthread_setname_np(pthread_self(), name_.c_str());
  uint8_t buf[4096];
  for (;;) {
    pollfd fds[2] = {{fd_, POLLIN, 0}, {stop_.get(), POLLIN, 0}};
    int n = ::poll(fds, 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      LOG_ERROR("{}: poll failed: {}; guest input stops", name_, std::strerror(errno));
      return;
    }
    if (fds[1].revents) return;  // stop requested
    if (fds[0].revents & POLLIN) {
      ssize_t r = ::read(fd_, buf, sizeof buf);
      if (r > 0) {
        callback_(std::span<const uint8_t>(buf, static_cast<size_t>(r)));
        continue;
      }
      if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (r == 0) {
        LOG_INFO("{}: end of input", name_);
      } else {
        LOG_WARN("{}: read failed: {}; guest input stops", name_, std::strerror(errno));
      }
      return;
    }
    if (fds[0].revents & (POLLHUP | POLLERR | POLLNVAL)) {
      // Without POLLIN there is nothing left to read; polling again would spin.
      LOG_INFO("{}: input closed; guest input stops", name_);
      return;
    }
  }
}

}  // namespace skiff
