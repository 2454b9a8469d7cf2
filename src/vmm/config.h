// VmConfig: everything needed to build one VM, independent of where it came
// from (command line today, the REST API's VmConfig JSON later).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "net/rate_limiter.h"

#include "vmm/cpu_config.h"

#include "memory/ram_options.h"

namespace skiff {

// One virtio-blk disk on PCI (--disk).
struct DiskConfig {
  std::string path;
  bool read_only = false;
  uint16_t num_queues = 0;  // 0: one per boot vCPU (at most 64)
  uint16_t queue_size = 256;
  bool direct = false;  // O_DIRECT (raw images; block/host_file.h)
  std::string serial;   // VIRTIO_BLK_T_GET_ID, up to 20 bytes
  std::string id;
  // vhost_user=on: an external vhost-user-blk back end listening on
  // vhost_socket serves the disk (path, readonly, direct and serial are then
  // the back end's business); needs shared guest memory.
  bool vhost_user = false;
  std::string vhost_socket;
};

// The virtio entropy device on PCI (--rng).
struct RngConfig {
  std::string source;  // a file such as /dev/urandom; empty: getrandom(2)
};

// The virtio console on PCI (--console; Linux's hvc0). No ConsoleConfig
// (--console off, API mode Off): no device.
struct ConsoleConfig {
  // The host end, as for serial: "tty", "pty", "file=PATH", or "off" (the
  // device exists and its output is discarded: --console null, API Null).
  std::string backend = "tty";
};

// One virtio-net device on PCI (--net, the API's "net"; Cloud Hypervisor's
// spelling). The backend is a tap opened by name (created if missing) or
// tap queue fds the caller already opened, one per queue pair.
struct NetConfig {
  std::string tap;          // interface name; empty when fds are given
  std::vector<int> fds;     // fd=[3,4]: inherited tap queues
  std::string mac;          // "52:54:00:12:34:56"; empty: a random local MAC
  uint16_t num_queues = 0;  // virtqueues, 2 x pairs (no control queue); 0: a pair per boot vCPU
  uint16_t queue_size = 256;
  bool vhost = false;  // vhost=on: /dev/vhost-net if available, else skiff's data path
  std::string id;
  net::RateLimiterConfig rate_limiter;  // per direction (rx and tx each get one)
};

// The virtio memory balloon on PCI (--balloon, API BalloonConfig).
struct BalloonConfig {
  uint64_t size = 0;  // initial target: bytes the guest should give back
  bool deflate_on_oom = false;
  bool free_page_reporting = false;
  uint32_t statistics_polling_interval = 0;  // seconds; 0: no polling
};

// One --memory-zone: a piece of guest RAM with its own host backing. Zones
// are placed in guest physical order (vmm/memory_layout.h).
struct MemoryZoneConfig {
  std::string id;
  uint64_t size = 0;
  RamOptions backing;  // thp comes from --memory
};

// --memory options other than the size (VmConfig::memory_size), and zones.
struct MemoryConfig {
  RamOptions backing;  // the RAM's backing when there are no zones
  // Non-empty: guest RAM is exactly these zones ("--memory size=0"), and
  // VmConfig::memory_size is the sum of their sizes.
  std::vector<MemoryZoneConfig> zones;
};

struct VmConfig {
  // Payload.
  std::string kernel;
  std::string initramfs;
  std::string cmdline;

  // CPUs and memory.
  uint32_t boot_cpus = 1;
  uint64_t memory_size = 512ull << 20;  // all guest RAM (with zones: their sum)
  MemoryConfig memory;

  // vCPU placement (--cpus max/topology/affinity) and the guest NUMA
  // nodes (--numa); vmm/cpu_placement.h validates them.
  uint32_t max_cpus = 0;                      // 0: boot_cpus (no hotpluggable vCPUs)
  std::optional<CpuTopologyConfig> topology;  // none: one socket of single-threaded cores
  std::vector<VcpuAffinity> affinity;         // vCPUs not listed run anywhere
  std::vector<NumaNodeConfig> numa;           // empty: no SRAT/SLIT
  [[nodiscard]] uint32_t effective_max_cpus() const { return max_cpus == 0 ? boot_cpus : max_cpus; }

  // The 16550 at 0x3f8: "tty", "off", "pty" or "file=PATH".
  std::string serial = "tty";

  // A reboot request (i8042, ACPI reset) ends skiff with status 0 instead of
  // restarting the guest.
  bool no_reboot = false;

  // virtio-pci devices, in PCI slot order: disks first, then the RNG.
  std::vector<DiskConfig> disks;
  std::optional<RngConfig> rng;
  std::optional<ConsoleConfig> console;  // after the RNG in slot order
  std::optional<BalloonConfig> balloon;  // last in slot order
  std::vector<NetConfig> nets;           // after the disks in slot order
};

inline constexpr uint32_t kMaxVcpus = 255;  // xAPIC IDs in the MADT are 8 bits
inline constexpr uint64_t kMinMemory = 8ull << 20;

}  // namespace skiff
