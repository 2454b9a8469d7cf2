#include "vhost_user/frontend.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

namespace skiff::vhost_user {

namespace {

template <typename T>
std::span<const uint8_t> bytes_of(const T& v) {
  return {reinterpret_cast<const uint8_t*>(&v), sizeof v};
}

}  // namespace

Result<std::unique_ptr<VhostUserFrontend>> VhostUserFrontend::connect(
    const std::string& path, std::chrono::milliseconds timeout) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path)
    return fail("vhost-user socket path '{}' must be 1..{} bytes long", path,
                sizeof addr.sun_path - 1);
  std::memcpy(addr.sun_path, path.data(), path.size());
  Fd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!sock) return fail_errno("creating a socket for vhost-user back end {}", path);
  if (::connect(sock.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno == ENOENT)
      return fail_errno("vhost-user socket {} does not exist (start the back end first)", path);
    if (errno == ECONNREFUSED) return fail_errno("no vhost-user back end is listening on {}", path);
    return fail_errno("connecting to vhost-user back end {}", path);
  }
  // Bounds a back end that stops in the middle of a message; waits for a
  // whole reply are bounded by poll() in await_reply.
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  if (::setsockopt(sock.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
      ::setsockopt(sock.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0)
    return fail_errno("setting timeouts on the socket of {}", path);
  return std::unique_ptr<VhostUserFrontend>(new VhostUserFrontend(std::move(sock), path, timeout));
}

bool VhostUserFrontend::peer_closed() const {
  pollfd p{sock_.get(), POLLRDHUP, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

Result<Message> VhostUserFrontend::await_reply(Request req, uint32_t max_reply) {
  pollfd p{sock_.get(), POLLIN, 0};
  auto deadline = std::chrono::steady_clock::now() + timeout_;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    int n = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(left.count(), 0)));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      return fail_errno("waiting for the reply to {} from {}",
                        request_name(static_cast<uint32_t>(req)), path_);
    if (n == 0)
      return fail("vhost-user back end {} did not answer {} within {} ms", path_,
                  request_name(static_cast<uint32_t>(req)), timeout_.count());
    break;
  }
  auto m = read_reply(sock_.get(), static_cast<uint32_t>(req), max_reply);
  if (!m) return context(m.error(), fmt::format("vhost-user back end {}", path_));
  return m;
}

Result<> VhostUserFrontend::send(Request req, std::span<const uint8_t> payload,
                                 std::span<const int> fds) {
  std::lock_guard lock(mu_);
  uint32_t flags = kVersion | (reply_ack_ ? kFlagNeedReply : 0);
  if (auto r = send_message(sock_.get(), static_cast<uint32_t>(req), flags, payload, fds); !r)
    return context(r.error(), fmt::format("vhost-user back end {}", path_));
  if (!reply_ack_) return {};
  Message m = SKIFF_TRY(await_reply(req, sizeof(uint64_t)));
  if (m.payload.size() != sizeof(uint64_t))
    return fail("vhost-user back end {}: REPLY_ACK of {} has {} bytes, want 8", path_,
                request_name(static_cast<uint32_t>(req)), m.payload.size());
  if (uint64_t status = m.as<uint64_t>(); status != 0)
    return fail("vhost-user back end {} refused {} (status {})", path_,
                request_name(static_cast<uint32_t>(req)), status);
  return {};
}

Result<Message> VhostUserFrontend::call(Request req, std::span<const uint8_t> payload,
                                        uint32_t max_reply) {
  std::lock_guard lock(mu_);
  if (auto r = send_message(sock_.get(), static_cast<uint32_t>(req), kVersion, payload, {}); !r)
    return context(r.error(), fmt::format("vhost-user back end {}", path_));
  return await_reply(req, max_reply);
}

Result<uint64_t> VhostUserFrontend::call_u64(Request req) {
  Message m = SKIFF_TRY(call(req, {}, sizeof(uint64_t)));
  if (m.payload.size() != sizeof(uint64_t))
    return fail("vhost-user back end {}: reply to {} has {} bytes, want 8", path_,
                request_name(static_cast<uint32_t>(req)), m.payload.size());
  return m.as<uint64_t>();
}

Result<uint64_t> VhostUserFrontend::get_features() {
  return call_u64(Request::kGetFeatures);
}

Result<> VhostUserFrontend::set_features(uint64_t features) {
  return send(Request::kSetFeatures, bytes_of(features));
}

Result<uint64_t> VhostUserFrontend::get_protocol_features() {
  return call_u64(Request::kGetProtocolFeatures);
}

Result<> VhostUserFrontend::set_protocol_features(uint64_t features) {
  // Sent without NEED_REPLY: REPLY_ACK is in force only once this is done.
  SKIFF_TRY_VOID(send(Request::kSetProtocolFeatures, bytes_of(features)));
  reply_ack_ = (features & (1ull << kProtocolReplyAck)) != 0;
  return {};
}

Result<> VhostUserFrontend::set_owner() {
  return send(Request::kSetOwner, {});
}

Result<uint64_t> VhostUserFrontend::get_queue_num() {
  return call_u64(Request::kGetQueueNum);
}

Result<> VhostUserFrontend::set_mem_table(const GuestMemory& mem) {
  auto regions = mem.regions();
  if (regions.empty()) return fail("no guest memory to share with {}", path_);
  if (regions.size() > kMaxMemRegions)
    return fail("guest memory has {} regions; vhost-user carries at most {}", regions.size(),
                kMaxMemRegions);
  std::vector<uint8_t> payload(kMemTableHeaderBytes + regions.size() * sizeof(MemoryRegionDesc));
  uint32_t count = static_cast<uint32_t>(regions.size());
  std::memcpy(payload.data(), &count, sizeof count);
  std::vector<int> fds;
  for (size_t i = 0; i < regions.size(); ++i) {
    const MemoryRegion& r = regions[i];
    // The back end maps the region from its fd; private anonymous memory
    // has none (guest_memory.h: --memory shared=on makes it a memfd).
    if (r.fd < 0)
      return fail("guest RAM at {:#x} (+{:#x}) is private memory that {} cannot map", r.gpa, r.size,
                  path_);
    MemoryRegionDesc d{r.gpa, r.size, reinterpret_cast<uint64_t>(r.host), r.fd_offset};
    std::memcpy(payload.data() + kMemTableHeaderBytes + i * sizeof d, &d, sizeof d);
    fds.push_back(r.fd);
  }
  return send(Request::kSetMemTable, payload, fds);
}

Result<> VhostUserFrontend::set_vring_num(uint32_t index, uint32_t num) {
  return send(Request::kSetVringNum, bytes_of(VringState{index, num}));
}

Result<> VhostUserFrontend::set_vring_addr(uint32_t index, uint64_t desc, uint64_t used,
                                           uint64_t avail) {
  return send(Request::kSetVringAddr, bytes_of(VringAddr{index, 0, desc, used, avail, 0}));
}

Result<> VhostUserFrontend::set_vring_base(uint32_t index, uint32_t base) {
  return send(Request::kSetVringBase, bytes_of(VringState{index, base}));
}

Result<uint32_t> VhostUserFrontend::get_vring_base(uint32_t index) {
  Message m =
      SKIFF_TRY(call(Request::kGetVringBase, bytes_of(VringState{index, 0}), sizeof(VringState)));
  if (m.payload.size() != sizeof(VringState))
    return fail("vhost-user back end {}: GET_VRING_BASE reply has {} bytes, want {}", path_,
                m.payload.size(), sizeof(VringState));
  auto s = m.as<VringState>();
  if (s.index != index)
    return fail("vhost-user back end {}: GET_VRING_BASE for ring {} answered for ring {}", path_,
                index, s.index);
  return s.num;
}

Result<> VhostUserFrontend::send_fd(Request req, uint32_t index, int fd) {
  // "VHOST_USER_SET_VRING_KICK": ring index in bits 0-7, bit 8 set when no
  // fd is passed (then the back end polls, which skiff never asks for).
  if (index > kVringIndexMask) return fail("ring index {} does not fit vhost-user's 8 bits", index);
  uint64_t v = index;
  if (fd < 0) v |= kVringNoFdFlag;
  int fds[1] = {fd};
  return send(req, bytes_of(v), fd < 0 ? std::span<const int>() : std::span<const int>(fds));
}

Result<> VhostUserFrontend::set_vring_kick(uint32_t index, int fd) {
  return send_fd(Request::kSetVringKick, index, fd);
}

Result<> VhostUserFrontend::set_vring_call(uint32_t index, int fd) {
  return send_fd(Request::kSetVringCall, index, fd);
}

Result<> VhostUserFrontend::set_vring_err(uint32_t index, int fd) {
  return send_fd(Request::kSetVringErr, index, fd);
}

Result<> VhostUserFrontend::set_vring_enable(uint32_t index, bool enable) {
  return send(Request::kSetVringEnable, bytes_of(VringState{index, enable ? 1u : 0u}));
}

Result<std::vector<uint8_t>> VhostUserFrontend::get_config(uint32_t offset, uint32_t size) {
  if (size > kMaxConfigBytes)
    return fail("config read of {} bytes exceeds vhost-user's {}", size, kMaxConfigBytes);
  std::vector<uint8_t> payload(sizeof(ConfigHeader) + size, 0);
  ConfigHeader h{offset, size, 0};
  std::memcpy(payload.data(), &h, sizeof h);
  Message m = SKIFF_TRY(call(Request::kGetConfig, payload, kMaxConfigPayloadBytes));
  // "VHOST_USER_GET_CONFIG": the reply's size MUST match the request; a
  // zero-length payload is the back end's way of saying it failed.
  if (m.payload.empty())
    return fail("vhost-user back end {} failed GET_CONFIG of {} bytes at offset {}", path_, size,
                offset);
  if (m.payload.size() != payload.size())
    return fail("vhost-user back end {}: GET_CONFIG reply has {} bytes, want {}", path_,
                m.payload.size(), payload.size());
  return std::vector<uint8_t>(m.payload.begin() + sizeof(ConfigHeader), m.payload.end());
}

}  // namespace skiff::vhost_user
