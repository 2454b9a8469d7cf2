#include "vhost_user/message.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstring>

namespace skiff::vhost_user {

std::string_view request_name(uint32_t request) {
  switch (static_cast<Request>(request)) {
    case Request::kGetFeatures:
      return "GET_FEATURES";
    case Request::kSetFeatures:
      return "SET_FEATURES";
    case Request::kSetOwner:
      return "SET_OWNER";
    case Request::kResetOwner:
      return "RESET_OWNER";
    case Request::kSetMemTable:
      return "SET_MEM_TABLE";
    case Request::kSetLogBase:
      return "SET_LOG_BASE";
    case Request::kSetLogFd:
      return "SET_LOG_FD";
    case Request::kSetVringNum:
      return "SET_VRING_NUM";
    case Request::kSetVringAddr:
      return "SET_VRING_ADDR";
    case Request::kSetVringBase:
      return "SET_VRING_BASE";
    case Request::kGetVringBase:
      return "GET_VRING_BASE";
    case Request::kSetVringKick:
      return "SET_VRING_KICK";
    case Request::kSetVringCall:
      return "SET_VRING_CALL";
    case Request::kSetVringErr:
      return "SET_VRING_ERR";
    case Request::kGetProtocolFeatures:
      return "GET_PROTOCOL_FEATURES";
    case Request::kSetProtocolFeatures:
      return "SET_PROTOCOL_FEATURES";
    case Request::kGetQueueNum:
      return "GET_QUEUE_NUM";
    case Request::kSetVringEnable:
      return "SET_VRING_ENABLE";
    case Request::kGetConfig:
      return "GET_CONFIG";
    case Request::kSetConfig:
      return "SET_CONFIG";
  }
  return "unknown request";
}

Result<> check_payload_size(uint32_t request, uint32_t size) {
  struct Range {
    uint32_t min, max;
  };
  Range r{};
  switch (static_cast<Request>(request)) {
    case Request::kGetFeatures:
    case Request::kSetOwner:
    case Request::kResetOwner:
    case Request::kGetProtocolFeatures:
    case Request::kGetQueueNum:
      r = {0, 0};
      break;
    case Request::kSetFeatures:
    case Request::kSetProtocolFeatures:
    case Request::kSetVringKick:
    case Request::kSetVringCall:
    case Request::kSetVringErr:
      r = {8, 8};
      break;
    case Request::kSetVringNum:
    case Request::kSetVringBase:
    case Request::kGetVringBase:
    case Request::kSetVringEnable:
      r = {sizeof(VringState), sizeof(VringState)};
      break;
    case Request::kSetVringAddr:
      r = {sizeof(VringAddr), sizeof(VringAddr)};
      break;
    case Request::kSetMemTable:
      r = {kMemTableHeaderBytes, kMaxMemTableBytes};
      break;
    case Request::kGetConfig:
    case Request::kSetConfig:
      r = {sizeof(ConfigHeader), kMaxConfigPayloadBytes};
      break;
    case Request::kSetLogBase:
    case Request::kSetLogFd:
      return fail("{} ({}) needs VHOST_F_LOG_ALL, which is not offered", request_name(request),
                  request);
    default:
      return fail("request {} is not supported", request);
  }
  if (size < r.min || size > r.max) {
    if (r.min == r.max)
      return fail("{} payload is {} bytes, want {}", request_name(request), size, r.min);
    return fail("{} payload is {} bytes, want {}..{}", request_name(request), size, r.min, r.max);
  }
  return {};
}

namespace {

// Receives exactly out.size() bytes, collecting any SCM_RIGHTS fds into
// `fds`. Returns false for EOF before the first byte (when allow_eof).
Result<bool> recv_exact(int sock, std::span<uint8_t> out, std::vector<Fd>& fds, bool allow_eof) {
  size_t done = 0;
  while (done < out.size()) {
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFdsPerMessage)];
    iovec iov{out.data() + done, out.size() - done};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return fail("timed out waiting for the rest of a message (the socket's receive timeout)");
    if (n < 0) return fail_errno("reading from the vhost-user socket");
    // Take ownership of every fd first, so that any error below closes them.
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        fds.emplace_back(fd);
      }
    }
    if (msg.msg_flags & MSG_CTRUNC)
      return fail("message carried more than {} file descriptors", kMaxFdsPerMessage);
    if (n == 0) {
      if (done == 0 && allow_eof) return false;
      return fail("the peer closed the connection in the middle of a message");
    }
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

Result<std::optional<Message>> read_message(int sock) {
  Message m;
  auto* hdr = reinterpret_cast<uint8_t*>(&m.header);
  bool got = SKIFF_TRY(recv_exact(sock, std::span(hdr, sizeof m.header), m.fds, true));
  if (!got) return std::optional<Message>();
  if ((m.header.flags & kVersionMask) != kVersion)
    return fail("message {} has protocol version {}, want {}", m.header.request,
                m.header.flags & kVersionMask, kVersion);
  if (m.header.flags & kFlagReply)
    return fail("front end sent a message with the reply flag ({})",
                request_name(m.header.request));
  // Sized before reading: a hostile size is refused without allocating it.
  SKIFF_TRY_VOID(check_payload_size(m.header.request, m.header.size));
  m.payload.resize(m.header.size);
  if (!m.payload.empty()) SKIFF_TRY(recv_exact(sock, m.payload, m.fds, false));
  if (m.fds.size() > kMaxFdsPerMessage)
    return fail("message carried {} file descriptors, at most {}", m.fds.size(), kMaxFdsPerMessage);
  return std::optional<Message>(std::move(m));
}

Result<Message> read_reply(int sock, uint32_t request, uint32_t max_size) {
  Message m;
  auto* hdr = reinterpret_cast<uint8_t*>(&m.header);
  bool got = SKIFF_TRY(recv_exact(sock, std::span(hdr, sizeof m.header), m.fds, true));
  if (!got)
    return fail("the back end closed the connection instead of answering {}",
                request_name(request));
  if ((m.header.flags & kVersionMask) != kVersion)
    return fail("reply to {} has protocol version {}, want {}", request_name(request),
                m.header.flags & kVersionMask, kVersion);
  if (!(m.header.flags & kFlagReply) || m.header.request != request)
    return fail("expected the reply to {}, got request {} (flags {:#x})", request_name(request),
                m.header.request, m.header.flags);
  if (m.header.size > max_size)
    return fail("reply to {} has {} payload bytes, at most {}", request_name(request),
                m.header.size, max_size);
  m.payload.resize(m.header.size);
  if (!m.payload.empty()) SKIFF_TRY(recv_exact(sock, m.payload, m.fds, false));
  return m;
}

Result<> send_message(int sock, uint32_t request, uint32_t flags, std::span<const uint8_t> payload,
                      std::span<const int> fds) {
  if (fds.size() > kMaxFdsPerMessage) return fail("too many fds to send ({})", fds.size());
  MessageHeader hdr{request, flags, static_cast<uint32_t>(payload.size())};
  iovec iov[2] = {{&hdr, sizeof hdr}, {const_cast<uint8_t*>(payload.data()), payload.size()}};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFdsPerMessage)] = {};
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = payload.empty() ? 1 : 2;
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  size_t total = sizeof hdr + payload.size();
  for (;;) {
    ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno("writing {} to the vhost-user socket", request_name(request));
    // Messages are small (< 300 bytes) and the socket is blocking: a short
    // send means the peer is gone.
    if (static_cast<size_t>(n) != total)
      return fail("short write of {} ({} of {} bytes)", request_name(request), n, total);
    return {};
  }
}

Result<> send_reply(int sock, uint32_t request, std::span<const uint8_t> payload) {
  return send_message(sock, request, kVersion | kFlagReply, payload, {});
}

}  // namespace skiff::vhost_user
