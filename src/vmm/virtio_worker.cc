#include "vmm/virtio_worker.h"

#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/log.h"

namespace skiff {

namespace {
// epoll tokens: a queue's index, kBackendToken + an index into backend_, or stop.
constexpr uint32_t kStopToken = 0xffffffff;
constexpr uint32_t kBackendToken = 0x10000;
}  // namespace

Result<std::unique_ptr<VirtioWorker>> VirtioWorker::start(std::string name,
                                                          std::vector<int> queue_fds,
                                                          std::vector<virtio::BackendEvent> backend,
                                                          std::function<void(uint16_t)> process) {
  if (queue_fds.size() >= kBackendToken) return fail("{}: {} queues", name, queue_fds.size());
  std::unique_ptr<VirtioWorker> w(new VirtioWorker(std::move(name), std::move(queue_fds),
                                                   std::move(backend), std::move(process)));
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return fail_errno("epoll_create1 for {}", w->name_);
  w->epoll_.reset(ep);
  w->stop_ = SKIFF_TRY(EventFd::create(0, EFD_NONBLOCK));
  SKIFF_TRY_VOID(w->watch(w->stop_.get(), kStopToken, EPOLLIN));
  for (size_t q = 0; q < w->queue_fds_.size(); ++q)
    SKIFF_TRY_VOID(w->watch(w->queue_fds_[q], static_cast<uint32_t>(q), EPOLLIN));
  for (size_t i = 0; i < w->backend_.size(); ++i)
    SKIFF_TRY_VOID(w->watch(w->backend_[i].fd, kBackendToken + static_cast<uint32_t>(i),
                            w->backend_[i].events | EPOLLET));
  w->thread_ = std::thread([p = w.get()] { p->run(); });
  return w;
}

VirtioWorker::~VirtioWorker() {
  stop_.signal();
  if (thread_.joinable()) thread_.join();
}

Result<> VirtioWorker::watch(int fd, uint32_t token, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u32 = token;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) < 0)
    return fail_errno("epoll_ctl for {} (fd {})", name_, fd);
  return {};
}

void VirtioWorker::run() {
  pthread_setname_np(pthread_self(), name_.substr(0, 15).c_str());
  epoll_event events[16];
  for (;;) {
    int n = ::epoll_wait(epoll_.get(), events, 16, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      LOG_ERROR("{}: epoll_wait failed: {}; the device stops", name_, std::strerror(errno));
      return;
    }
    for (int i = 0; i < n; ++i) {
      uint32_t token = events[i].data.u32;
      if (token == kStopToken) return;
      if (token >= kBackendToken) {
        process_(backend_[token - kBackendToken].queue);
        continue;
      }
      uint64_t v = 0;
      if (::read(queue_fds_[token], &v, sizeof v) != sizeof v) continue;
      process_(static_cast<uint16_t>(token));
    }
  }
}

}  // namespace skiff
