// Message framing for vhost-user (specs/vhost-user.rst "Message
// Specification"): a 12-byte header, a payload of header.size bytes and,
// for some requests, file descriptors in SCM_RIGHTS ancillary data.
//
// Everything here is front-end controlled, so it is checked before it is
// used: the version bits, the payload size against what the request type
// allows (checked before the payload is read, so a huge size cannot make us
// allocate or block), the number of fds (a truncated control message is an
// error). Received fds are owned (Fd) from the moment they arrive, so an
// error path never leaks them.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "vhost_user/protocol.h"

namespace skiff::vhost_user {

struct Message {
  MessageHeader header{};
  std::vector<uint8_t> payload;
  std::vector<Fd> fds;

  [[nodiscard]] bool need_reply() const { return (header.flags & kFlagNeedReply) != 0; }
  // The payload as T; the caller has checked the size (payload_size_ok).
  template <typename T>
  [[nodiscard]] T as() const {
    T v{};
    std::memcpy(&v, payload.data(), std::min(sizeof v, payload.size()));
    return v;
  }
};

// Whether `size` is an acceptable payload size for `request`; an error names
// the request and the size. Unknown requests are refused here.
[[nodiscard]] Result<> check_payload_size(uint32_t request, uint32_t size);

// Reads one message from a connected stream socket. Nothing (not an error)
// when the peer closed the connection cleanly before a new message.
[[nodiscard]] Result<std::optional<Message>> read_message(int sock);

// Sends a reply to `request` (version 1, reply bit set) with `payload`.
[[nodiscard]] Result<> send_reply(int sock, uint32_t request, std::span<const uint8_t> payload);

// Reads the back end's reply to `request` (the front-end side, frontend.h):
// version 1 with the reply flag, the same request number, at most
// `max_size` payload bytes (checked before the payload is read). Any fds
// that came with it are owned by the Message and closed with it.
[[nodiscard]] Result<Message> read_reply(int sock, uint32_t request, uint32_t max_size);

// Sends a front-end message (frontend.h, and tests of the back end).
[[nodiscard]] Result<> send_message(int sock, uint32_t request, uint32_t flags,
                                    std::span<const uint8_t> payload, std::span<const int> fds);

}  // namespace skiff::vhost_user
