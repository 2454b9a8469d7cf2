#include "net/vhost_net.h"

#include <fcntl.h>
// <linux/vhost.h> pulls in <linux/virtio_ring.h>, whose legacy vring_init()
// is C that does not compile as C++; skiff needs none of it.
#define VIRTIO_RING_NO_LEGACY
#include <linux/vhost.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstdlib>
#include <memory>

namespace skiff::net {

namespace {

// vhost_memory ends in a flexible array: one allocation for header + regions.
struct MemTableDeleter {
  void operator()(vhost_memory* m) const { std::free(m); }
};

}  // namespace

Result<VhostNet> VhostNet::open(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT)
      return fail("{} does not exist on this host (load the vhost_net module: modprobe vhost_net)",
                  path);
    return fail_errno("opening {}", path);
  }
  // Binds the instance to this process (its mm is what user addresses in
  // the memory table and ring addresses refer to) and starts its worker.
  if (::ioctl(fd.get(), VHOST_SET_OWNER) != 0) return fail_errno("{}: VHOST_SET_OWNER", path);
  return VhostNet(path, std::move(fd));
}

Result<uint64_t> VhostNet::get_features() const {
  uint64_t features = 0;
  if (::ioctl(fd_.get(), VHOST_GET_FEATURES, &features) != 0)
    return fail_errno("{}: VHOST_GET_FEATURES", path_);
  return features;
}

Result<> VhostNet::set_features(uint64_t features) const {
  if (::ioctl(fd_.get(), VHOST_SET_FEATURES, &features) != 0)
    return fail_errno("{}: VHOST_SET_FEATURES {:#x}", path_, features);
  return {};
}

Result<> VhostNet::set_mem_table(const std::vector<VhostMemoryRegion>& regions) const {
  size_t bytes = sizeof(vhost_memory) + regions.size() * sizeof(vhost_memory_region);
  std::unique_ptr<vhost_memory, MemTableDeleter> m(
      static_cast<vhost_memory*>(std::calloc(1, bytes)));
  if (!m) return fail("{}: no memory for a table of {} regions", path_, regions.size());
  m->nregions = static_cast<uint32_t>(regions.size());
  for (size_t i = 0; i < regions.size(); ++i) {
    m->regions[i].guest_phys_addr = regions[i].gpa;
    m->regions[i].memory_size = regions[i].size;
    m->regions[i].userspace_addr = regions[i].user_addr;
  }
  // E2BIG: more regions than the module's max_mem_regions (default 64).
  if (::ioctl(fd_.get(), VHOST_SET_MEM_TABLE, m.get()) != 0)
    return fail_errno("{}: VHOST_SET_MEM_TABLE with {} regions", path_, regions.size());
  return {};
}

Result<> VhostNet::set_vring_num(unsigned ring, unsigned num) const {
  vhost_vring_state s{ring, num};
  if (::ioctl(fd_.get(), VHOST_SET_VRING_NUM, &s) != 0)
    return fail_errno("{}: VHOST_SET_VRING_NUM ring {} size {}", path_, ring, num);
  return {};
}

Result<> VhostNet::set_vring_addr(unsigned ring, uint64_t desc, uint64_t used,
                                  uint64_t avail) const {
  vhost_vring_addr a{};
  a.index = ring;
  a.desc_user_addr = desc;
  a.used_user_addr = used;
  a.avail_user_addr = avail;
  if (::ioctl(fd_.get(), VHOST_SET_VRING_ADDR, &a) != 0)
    return fail_errno("{}: VHOST_SET_VRING_ADDR ring {}", path_, ring);
  return {};
}

Result<> VhostNet::set_vring_base(unsigned ring, uint16_t next_avail) const {
  vhost_vring_state s{ring, next_avail};
  if (::ioctl(fd_.get(), VHOST_SET_VRING_BASE, &s) != 0)
    return fail_errno("{}: VHOST_SET_VRING_BASE ring {} base {}", path_, ring, next_avail);
  return {};
}

Result<uint16_t> VhostNet::get_vring_base(unsigned ring) const {
  vhost_vring_state s{ring, 0};
  if (::ioctl(fd_.get(), VHOST_GET_VRING_BASE, &s) != 0)
    return fail_errno("{}: VHOST_GET_VRING_BASE ring {}", path_, ring);
  return static_cast<uint16_t>(s.num);
}

namespace {

Result<> set_vring_fd(int vhost_fd, const std::string& path, unsigned long request,
                      const char* name, unsigned ring, int fd) {
  vhost_vring_file f{ring, fd};
  if (::ioctl(vhost_fd, request, &f) != 0)
    return fail_errno("{}: {} ring {} fd {}", path, name, ring, fd);
  return {};
}

}  // namespace

Result<> VhostNet::set_vring_kick(unsigned ring, int fd) const {
  return set_vring_fd(fd_.get(), path_, VHOST_SET_VRING_KICK, "VHOST_SET_VRING_KICK", ring, fd);
}

Result<> VhostNet::set_vring_call(unsigned ring, int fd) const {
  return set_vring_fd(fd_.get(), path_, VHOST_SET_VRING_CALL, "VHOST_SET_VRING_CALL", ring, fd);
}

Result<> VhostNet::set_vring_err(unsigned ring, int fd) const {
  return set_vring_fd(fd_.get(), path_, VHOST_SET_VRING_ERR, "VHOST_SET_VRING_ERR", ring, fd);
}

Result<> VhostNet::set_backend(unsigned ring, int tap_fd) const {
  return set_vring_fd(fd_.get(), path_, VHOST_NET_SET_BACKEND, "VHOST_NET_SET_BACKEND", ring,
                      tap_fd);
}

}  // namespace skiff::net
