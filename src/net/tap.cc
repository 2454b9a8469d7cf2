#include "net/tap.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/log.h"

namespace skiff::net {

static_assert(kOffloadCsum == TUN_F_CSUM && kOffloadTso4 == TUN_F_TSO4 &&
              kOffloadTso6 == TUN_F_TSO6 && kOffloadTsoEcn == TUN_F_TSO_ECN &&
              kOffloadUfo == TUN_F_UFO);

namespace {

constexpr short kTapFlags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;

Result<Fd> open_queue(const std::string& name, short flags) {
  Fd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!fd) return fail_errno("opening /dev/net/tun for tap {}", name);
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, name.data(), name.size());
  ifr.ifr_flags = flags;
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) != 0)
    return fail_errno("attaching to tap {} (TUNSETIFF flags {:#x})", name,
                      static_cast<unsigned short>(flags));
  return fd;
}

}  // namespace

Result<std::unique_ptr<Tap>> Tap::open(const std::string& name, uint16_t queue_pairs, TapUse use) {
  if (name.empty() || name.size() >= IFNAMSIZ)
    return fail("tap name '{}' must be 1 to {} characters", name, IFNAMSIZ - 1);
  if (queue_pairs == 0) return fail("tap {}: 0 queue pairs", name);
  std::vector<Fd> queues;
  bool multi = true;
  if (queue_pairs == 1) {
    // A single queue works with taps made with or without multi_queue.
    auto fd = open_queue(name, kTapFlags | IFF_MULTI_QUEUE);
    if (!fd && fd.error().errnum == EINVAL) {
      multi = false;
      fd = open_queue(name, kTapFlags);
    }
    if (!fd) return std::unexpected(fd.error());
    queues.push_back(std::move(*fd));
  } else {
    for (uint16_t i = 0; i < queue_pairs; ++i) {
      auto fd = open_queue(name, kTapFlags | IFF_MULTI_QUEUE);
      if (!fd) {
        if (fd.error().errnum == EINVAL && i == 0)
          return fail(
              "tap {} exists without multi_queue, so it cannot serve {} queue pairs: recreate it "
              "with `ip tuntap add {} mode tap multi_queue` or use num_queues=2",
              name, queue_pairs, name);
        return context(fd.error(), fmt::format("queue {} of {}", i, queue_pairs));
      }
      queues.push_back(std::move(*fd));
    }
  }
  std::unique_ptr<Tap> tap(new Tap(name, std::move(queues), multi));
  SKIFF_TRY_VOID(tap->prepare(use));
  return tap;
}

Result<std::unique_ptr<Tap>> Tap::adopt(std::vector<Fd> fds, TapUse use) {
  if (fds.empty()) return fail("no tap fds given");
  std::string name;
  bool multi = false;
  for (size_t i = 0; i < fds.size(); ++i) {
    ifreq ifr{};
    if (::ioctl(fds[i].get(), TUNGETIFF, &ifr) != 0)
      return fail_errno("fd {} is not an attached tap (TUNGETIFF)", fds[i].get());
    std::string n(ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ));
    if ((ifr.ifr_flags & TUN_TYPE_MASK) != IFF_TAP)
      return fail("fd {} is a tun (layer 3) device, not a tap", fds[i].get());
    if (!(ifr.ifr_flags & IFF_NO_PI) || !(ifr.ifr_flags & IFF_VNET_HDR))
      return fail("tap fd {} ({}) was opened without IFF_NO_PI | IFF_VNET_HDR; open it with both",
                  fds[i].get(), n);
    if (i == 0) {
      name = n;
      multi = (ifr.ifr_flags & IFF_MULTI_QUEUE) != 0;
    } else if (n != name) {
      return fail("tap fds belong to different interfaces ({} and {})", name, n);
    }
  }
  if (fds.size() > 1 && !multi)
    return fail("{} tap fds given but tap {} is not multi_queue", fds.size(), name);
  std::unique_ptr<Tap> tap(new Tap(name, std::move(fds), multi));
  SKIFF_TRY_VOID(tap->prepare(use));
  return tap;
}

Result<> Tap::prepare(TapUse use) {
  int hdr = static_cast<int>(kVnetHeaderBytes);
  for (const Fd& fd : queues_) {
    int flags = ::fcntl(fd.get(), F_GETFL);
    if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) != 0)
      return fail_errno("tap {}: making fd {} non-blocking", name_, fd.get());
    // Per interface, but harmless to repeat: every fd we hold agrees.
    if (::ioctl(fd.get(), TUNSETVNETHDRSZ, &hdr) != 0)
      return fail_errno("tap {}: setting the vnet header size to {}", name_, hdr);
    if (use == TapUse::kVhostNet) continue;
    Fd wake(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0));
    if (!wake) return fail_errno("tap {}: duplicating fd {}", name_, fd.get());
    tx_wake_.push_back(std::move(wake));
  }
  for (size_t i = 0; use == TapUse::kUserspace && i < queues_.size(); ++i) {
    auto send = TapRing::create();
    auto recv = TapRing::create();
    if (!send || !recv) {
      LOG_INFO("tap {}: sending and receiving frame by frame: {}", name_,
               (!send ? send : recv).error().what());
      send_rings_.clear();
      recv_rings_.clear();
      break;
    }
    send_rings_.push_back(std::move(*send));
    recv_rings_.push_back(std::move(*recv));
  }
  // Probe: the full set, then without UFO (kernels between its removal in
  // 4.14 and its return refuse it with EINVAL), then checksum only.
  for (unsigned set :
       {kOffloadCsum | kOffloadTso4 | kOffloadTso6 | kOffloadTsoEcn | kOffloadUfo,
        kOffloadCsum | kOffloadTso4 | kOffloadTso6 | kOffloadTsoEcn, unsigned{kOffloadCsum}}) {
    if (::ioctl(queues_[0].get(), TUNSETOFFLOAD, static_cast<unsigned long>(set)) == 0) {
      supported_offloads_ = set;
      break;
    }
  }
  return set_offloads(0);
}

Result<size_t> Tap::receive(uint16_t pair, std::span<const iovec> iov) {
  for (;;) {
    ssize_t n = ::readv(queues_[pair].get(), iov.data(), static_cast<int>(iov.size()));
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return size_t{0};
    return fail_errno("tap {}: reading queue {}", name_, pair);
  }
}

Result<size_t> Tap::receive_batch(uint16_t pair, std::span<const std::span<uint8_t>> bufs,
                                  std::span<int> sizes) {
  if (pair >= recv_rings_.size() || recv_rings_[pair]->broken())
    return NetBackend::receive_batch(pair, bufs, sizes);
  TapRing& ring = *recv_rings_[pair];
  size_t tried = ring.receive(queues_[pair].get(), bufs, sizes);
  if (!ring.broken()) return tried;
  LOG_WARN("tap {}: queue {}: {}; receiving frame by frame from now on", name_, pair,
           ring.broken_why());
  if (tried > 0) return tried;
  return NetBackend::receive_batch(pair, bufs, sizes);
}

bool Tap::arm_tx_event(uint16_t pair) {
  // tun wakes writers (EPOLLOUT on the queue's wait queue) only if its poll
  // ran while the queue was full; an epoll that registered the fd earlier,
  // edge-triggered, does not poll it again by itself.
  pollfd p{queues_[pair].get(), POLLOUT, 0};
  int r;
  do {
    r = ::poll(&p, 1, 0);
  } while (r < 0 && errno == EINTR);
  return r > 0 && (p.revents & POLLOUT);  // (an error: the next send says what)
}

bool Tap::still_full(uint16_t pair, int& idle) {
  // Full only once the poll armed the wakeup (it said no room); with room
  // already, try again. The tap refusing while its poll says it has room
  // would be a kernel oddity: after kFullRetries such rounds in a row the
  // frames wait for the next tx notification.
  if (!arm_tx_event(pair)) return true;
  if (++idle <= kFullRetries) return false;
  LOG_DEBUG("tap {}: queue {} says it has room but refuses frames (EAGAIN)", name_, pair);
  return true;
}

Result<bool> Tap::send(uint16_t pair, std::span<const iovec> iov) {
  for (int idle = 0;;) {
    ssize_t n = ::writev(queues_[pair].get(), iov.data(), static_cast<int>(iov.size()));
    if (n >= 0) return true;  // the tap takes a frame whole or not at all
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      if (still_full(pair, idle)) return false;
      continue;
    }
    return fail_errno("tap {}: writing a frame to queue {}", name_, pair);
  }
}

Result<size_t> Tap::send_batch(uint16_t pair, std::span<const std::span<const iovec>> frames,
                               std::span<int> refused) {
  if (pair >= send_rings_.size() || send_rings_[pair]->broken())
    return NetBackend::send_batch(pair, frames, refused);
  TapRing& ring = *send_rings_[pair];
  size_t taken = ring.send(queues_[pair].get(), frames, refused);
  for (int idle = 0; taken < frames.size() && !ring.broken();) {
    // Full (EAGAIN): the rest waits for tx_event_fd, unless room came
    // meanwhile. Rounds that send something are bounded by the batch.
    if (still_full(pair, idle)) return taken;
    const size_t got =
        ring.send(queues_[pair].get(), frames.subspan(taken), refused.subspan(taken));
    if (got > 0) idle = 0;
    taken += got;
  }
  if (!ring.broken() || taken == frames.size()) return taken;
  // Said once: the queue sends frame by frame from now on.
  LOG_WARN("tap {}: queue {}: {}; sending frame by frame from now on", name_, pair,
           ring.broken_why());
  auto rest = NetBackend::send_batch(pair, frames.subspan(taken), refused.subspan(taken));
  if (!rest) return rest;
  return taken + *rest;
}

Result<> Tap::set_offloads(unsigned offloads) {
  if (offloads & ~supported_offloads_)
    return fail("tap {}: offloads {:#x} are not supported (have {:#x})", name_,
                offloads & ~supported_offloads_, supported_offloads_);
  if (::ioctl(queues_[0].get(), TUNSETOFFLOAD, static_cast<unsigned long>(offloads)) != 0)
    return fail_errno("tap {}: TUNSETOFFLOAD {:#x}", name_, offloads);
  return {};
}

Result<> Tap::set_queue_pair_enabled(uint16_t pair, bool enabled) {
  if (pair >= queues_.size()) return fail("tap {}: no queue {}", name_, pair);
  if (!multi_queue_) return {};  // one queue: always attached
  ifreq ifr{};
  ifr.ifr_flags = enabled ? IFF_ATTACH_QUEUE : IFF_DETACH_QUEUE;
  if (::ioctl(queues_[pair].get(), TUNSETQUEUE, &ifr) != 0) {
    // Attaching an attached queue (or detaching a detached one) is EINVAL;
    // the state asked for is already there.
    if (errno == EINVAL) return {};
    return fail_errno("tap {}: {} queue {}", name_, enabled ? "attaching" : "detaching", pair);
  }
  return {};
}

}  // namespace skiff::net
