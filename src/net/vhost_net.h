// VhostNet: one instance of the kernel's vhost-net (/dev/vhost-net), the
// in-kernel data path for one virtio-net queue pair (ring 0 receive, ring 1
// transmit) over a tap queue. This is the only code in skiff that issues
// vhost ioctls (<linux/vhost.h>); it knows nothing about virtio devices or
// guest memory objects: callers pass plain addresses.
//
// The sequence the kernel expects (drivers/vhost/net.c, vhost.c):
//   SET_OWNER once per open fd (binds the fd to this process's mm and
//   starts the vhost worker thread);
//   SET_FEATURES (the subset of GET_FEATURES the driver negotiated:
//   MRG_RXBUF, VERSION_1, EVENT_IDX, INDIRECT_DESC decide the layout);
//   SET_MEM_TABLE (guest physical -> this process's user addresses);
//   per ring SET_VRING_NUM / ADDR / BASE / CALL / ERR / KICK, which the
//   kernel refuses (EBUSY) while the ring has a backend;
//   NET_SET_BACKEND(ring, tap fd) starts the ring, NET_SET_BACKEND(ring, -1)
//   stops it, after which GET_VRING_BASE returns where it stopped.
// Without VHOST_NET_F_VIRTIO_NET_HDR the kernel passes the virtio-net
// header through to the tap, so the tap's header size (TUNSETVNETHDRSZ)
// must be the driver's: 12 bytes with MRG_RXBUF or VERSION_1 (always here).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"

namespace skiff::net {

inline constexpr const char* kVhostNetPath = "/dev/vhost-net";

// One guest RAM region for VHOST_SET_MEM_TABLE.
struct VhostMemoryRegion {
  uint64_t gpa;
  uint64_t size;
  uint64_t user_addr;  // where this process has it mapped
};

class VhostNet {
 public:
  static constexpr unsigned kRxRing = 0;
  static constexpr unsigned kTxRing = 1;

  // Opens `path` and becomes its owner (SET_OWNER). Errors name the path
  // and, for a missing device, say to load the vhost_net module.
  [[nodiscard]] static Result<VhostNet> open(const std::string& path = kVhostNetPath);

  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] int fd() const { return fd_.get(); }

  [[nodiscard]] Result<uint64_t> get_features() const;
  [[nodiscard]] Result<> set_features(uint64_t features) const;
  [[nodiscard]] Result<> set_mem_table(const std::vector<VhostMemoryRegion>& regions) const;
  [[nodiscard]] Result<> set_vring_num(unsigned ring, unsigned num) const;
  // Addresses are user addresses of this process (not guest physical).
  [[nodiscard]] Result<> set_vring_addr(unsigned ring, uint64_t desc, uint64_t used,
                                        uint64_t avail) const;
  [[nodiscard]] Result<> set_vring_base(unsigned ring, uint16_t next_avail) const;
  [[nodiscard]] Result<uint16_t> get_vring_base(unsigned ring) const;
  [[nodiscard]] Result<> set_vring_kick(unsigned ring, int fd) const;
  [[nodiscard]] Result<> set_vring_call(unsigned ring, int fd) const;
  [[nodiscard]] Result<> set_vring_err(unsigned ring, int fd) const;
  // A tap queue fd starts the ring; -1 stops it.
  [[nodiscard]] Result<> set_backend(unsigned ring, int tap_fd) const;

 private:
  VhostNet(std::string path, Fd fd) : path_(std::move(path)), fd_(std::move(fd)) {}
  std::string path_;
  Fd fd_;
};

}  // namespace skiff::net
