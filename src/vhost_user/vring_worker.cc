#include "vhost_user/vring_worker.h"

#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/log.h"

namespace skiff::vhost_user {

namespace {
constexpr uint64_t kTagKick = 1;
constexpr uint64_t kTagWake = 2;
constexpr uint64_t kTagBackend = 3;
}  // namespace

Result<std::unique_ptr<VringWorker>> VringWorker::start(std::string name, int kick_fd,
                                                        std::function<void()> process,
                                                        std::span<const BackendFd> backend_fds) {
  EventFd wake = SKIFF_TRY(EventFd::create(0, EFD_NONBLOCK));
  Fd ep(::epoll_create1(EPOLL_CLOEXEC));
  if (!ep) return fail_errno("epoll_create1 for {}", name);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kTagKick;
  if (::epoll_ctl(ep.get(), EPOLL_CTL_ADD, kick_fd, &ev) != 0)
    return fail_errno("watching the kick fd of {}", name);
  ev.data.u64 = kTagWake;
  if (::epoll_ctl(ep.get(), EPOLL_CTL_ADD, wake.get(), &ev) != 0)
    return fail_errno("watching the wake fd of {}", name);
  for (const BackendFd& b : backend_fds) {
    epoll_event bev{};
    bev.events = b.events | EPOLLET;
    bev.data.u64 = kTagBackend;
    if (::epoll_ctl(ep.get(), EPOLL_CTL_ADD, b.fd, &bev) != 0)
      return fail_errno("watching backend fd {} of {}", b.fd, name);
  }
  auto w = std::unique_ptr<VringWorker>(new VringWorker(
      std::move(name), kick_fd, std::move(process), std::move(wake), std::move(ep)));
  w->wake();  // buffers may already be waiting (restart after GET_VRING_BASE, reconnect)
  w->thread_ = std::thread([p = w.get()] { p->loop(); });
  return w;
}

VringWorker::VringWorker(std::string name, int kick_fd, std::function<void()> process, EventFd wake,
                         Fd ep)
    : name_(std::move(name)),
      kick_fd_(kick_fd),
      process_(std::move(process)),
      wake_(std::move(wake)),
      epoll_(std::move(ep)) {}

VringWorker::~VringWorker() {
  stop_.store(true, std::memory_order_release);
  wake_.signal();
  if (thread_.joinable()) thread_.join();
}

void VringWorker::loop() {
  // pthread names are at most 15 characters.
  (void)::pthread_setname_np(::pthread_self(), name_.substr(0, 15).c_str());
  while (!stop_.load(std::memory_order_acquire)) {
    epoll_event evs[8];
    int n = ::epoll_wait(epoll_.get(), evs, 8, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      LOG_ERROR("{}: epoll_wait failed: {}; ring stops", name_, std::strerror(errno));
      return;
    }
    for (int i = 0; i < n; ++i) {
      if (evs[i].data.u64 == kTagKick) {
        // Drain the eventfd counter; the value has no meaning (spec:
        // "The 8-value itself has no meaning"). EAGAIN is harmless.
        uint64_t v;
        if (::read(kick_fd_, &v, sizeof v) < 0 && errno != EAGAIN && errno != EINTR) {
          LOG_WARN("{}: reading the kick fd failed: {}; ring stops", name_, std::strerror(errno));
          return;
        }
      } else if (evs[i].data.u64 == kTagWake) {
        (void)wake_.consume();
      }  // kTagBackend: the device drains its own fd in process_
    }
    if (stop_.load(std::memory_order_acquire)) break;
    process_();
  }
}

}  // namespace skiff::vhost_user
