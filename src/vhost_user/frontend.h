// VhostUserFrontend: the front-end (VMM) side of one vhost-user connection
// (specs/vhost-user.rst), the mirror of VhostUserBackend. skiff uses it to
// hand a virtio device's rings to an external back end such as
// qemu-storage-daemon or skiff-vhost (frontend_blk.h).
//
// One request at a time ("Communication": the front end waits for a
// request's reply before sending the next): a mutex serialises callers (a
// vCPU thread writing device status, the API thread), and every wait is
// bounded by `timeout`, so a back end that hangs gives an Error instead of
// a stuck vCPU. The socket has SO_RCVTIMEO/SO_SNDTIMEO as well, for a
// back end that stalls in the middle of a message.
//
// With VHOST_USER_PROTOCOL_F_REPLY_ACK negotiated every request that has
// no reply of its own is sent with NEED_REPLY and its u64 status awaited
// ("REPLY_ACK"), so a back end refusing SET_MEM_TABLE or SET_VRING_NUM is
// an error at that call, not a silent stall later.
//
// Replies are back-end controlled input: version, reply flag, request
// number and payload size are checked (message.h read_reply) before use.
//
// Not implemented: the back-end request channel (BACKEND_REQ: config
// change notifications, host notifiers), INFLIGHT_SHMFD, LOG_ALL (dirty
// logging for migration), CONFIGURE_MEM_SLOTS, reconnection by itself (the
// owner makes a new VhostUserFrontend).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "memory/guest_memory.h"
#include "vhost_user/message.h"
#include "vhost_user/protocol.h"

namespace skiff::vhost_user {

// The protocol features skiff's front end can use.
inline constexpr uint64_t kFrontendProtocolFeatures =
    (1ull << kProtocolMq) | (1ull << kProtocolReplyAck) | (1ull << kProtocolConfig);

class VhostUserFrontend {
 public:
  static constexpr std::chrono::milliseconds kDefaultTimeout{5000};

  // Connects to the back end listening on `path`. A missing socket, a
  // socket nobody listens on and a path too long for sun_path are errors
  // that name the path.
  [[nodiscard]] static Result<std::unique_ptr<VhostUserFrontend>> connect(
      const std::string& path, std::chrono::milliseconds timeout = kDefaultTimeout);

  // --- negotiation
  [[nodiscard]] Result<uint64_t> get_features();
  [[nodiscard]] Result<> set_features(uint64_t features);
  [[nodiscard]] Result<uint64_t> get_protocol_features();
  // Also turns on REPLY_ACK handling if `features` has it.
  [[nodiscard]] Result<> set_protocol_features(uint64_t features);
  [[nodiscard]] Result<> set_owner();
  [[nodiscard]] Result<uint64_t> get_queue_num();

  // --- guest memory: one region per GuestMemory region, each carried by
  // its fd (MemoryRegion::fd/fd_offset). Private memory cannot be shared:
  // that is an error naming the region.
  [[nodiscard]] Result<> set_mem_table(const GuestMemory& mem);

  // --- rings ("Ring states")
  [[nodiscard]] Result<> set_vring_num(uint32_t index, uint32_t num);
  // Addresses are this process's user addresses of the three areas.
  [[nodiscard]] Result<> set_vring_addr(uint32_t index, uint64_t desc, uint64_t used,
                                        uint64_t avail);
  [[nodiscard]] Result<> set_vring_base(uint32_t index, uint32_t base);
  // Stops the ring; the answer is the back end's next available index.
  [[nodiscard]] Result<uint32_t> get_vring_base(uint32_t index);
  [[nodiscard]] Result<> set_vring_kick(uint32_t index, int fd);
  [[nodiscard]] Result<> set_vring_call(uint32_t index, int fd);
  [[nodiscard]] Result<> set_vring_err(uint32_t index, int fd);
  [[nodiscard]] Result<> set_vring_enable(uint32_t index, bool enable);

  // --- config space (needs PROTOCOL_F_CONFIG)
  [[nodiscard]] Result<std::vector<uint8_t>> get_config(uint32_t offset, uint32_t size);

  // The connected socket, for watching it for a hang-up (POLLRDHUP).
  [[nodiscard]] int socket_fd() const { return sock_.get(); }
  [[nodiscard]] const std::string& path() const { return path_; }
  // Whether the back end hung up (checked without blocking).
  [[nodiscard]] bool peer_closed() const;

 private:
  VhostUserFrontend(Fd sock, std::string path, std::chrono::milliseconds timeout)
      : sock_(std::move(sock)), path_(std::move(path)), timeout_(timeout) {}

  // A request without a reply of its own (acknowledged with REPLY_ACK).
  [[nodiscard]] Result<> send(Request req, std::span<const uint8_t> payload,
                              std::span<const int> fds = {});
  // A request whose reply carries a payload of at most `max_reply` bytes.
  [[nodiscard]] Result<Message> call(Request req, std::span<const uint8_t> payload,
                                     uint32_t max_reply);
  [[nodiscard]] Result<uint64_t> call_u64(Request req);
  // Waits (bounded) for the reply to `req` and reads it. Lock held.
  [[nodiscard]] Result<Message> await_reply(Request req, uint32_t max_reply);
  [[nodiscard]] Result<> send_fd(Request req, uint32_t index, int fd);

  std::mutex mu_;  // one request/reply exchange at a time
  Fd sock_;
  std::string path_;
  std::chrono::milliseconds timeout_;
  bool reply_ack_ = false;
};

}  // namespace skiff::vhost_user
