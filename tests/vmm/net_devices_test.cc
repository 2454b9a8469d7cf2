// --net to a VirtioNet without KVM: queue pairs, the vhost=on fallback
// (and its refusal with a rate limit), errors naming the --net value, and a real tap (created in a
// private network namespace of a child process, so nothing touches the
// host's interfaces).
#include "vmm/net_devices.h"

#include <net/if.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <functional>

#include <gtest/gtest.h>

#include "virtio/devices/net.h"

namespace skiff {
namespace {

TEST(NetDevices, QueuePairsDefaultToOnePerVcpu) {
  NetConfig c;
  c.tap = "t";
  EXPECT_EQ(net_queue_pairs(c, 1), 1);
  EXPECT_EQ(net_queue_pairs(c, 3), 3);
  EXPECT_EQ(net_queue_pairs(c, 200), 64);
  c.num_queues = 8;
  EXPECT_EQ(net_queue_pairs(c, 1), 4);
  NetConfig f;
  f.fds = {7, 8};
  EXPECT_EQ(net_queue_pairs(f, 5), 2);
}

TEST(NetDevices, VhostOnFallbackMessageSaysWhyAndWhatRuns) {
  EXPECT_EQ(vhost_net_fallback_message("/x does not exist"),
            "vhost=on: /x does not exist; using skiff's own virtio-net data path");
}

TEST(NetDevices, VhostOnWithARateLimitIsRefused) {
  NetConfig c;
  c.tap = "t0";
  c.vhost = true;
  c.rate_limiter.bandwidth = {1 << 20, 0, 100};
  GuestMemory mem;
  auto r = make_net_device(c, 1, mem, "/nonexistent/vhost-net");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().what().find("--net tap=t0: vhost=on and a rate limit"), std::string::npos)
      << r.error().what();
}

TEST(NetDevices, ErrorsNameTheNetValue) {
  NetConfig c;
  c.fds = {1000};
  auto r = make_virtio_net(c, 1);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().what().find("--net fd=[1000]: fd 1000 is not open"), std::string::npos)
      << r.error().what();
  // An open fd that is not a tap.
  c.fds = {STDERR_FILENO};
  r = make_virtio_net(c, 1);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().what().find("--net fd=[2]"), std::string::npos) << r.error().what();
}

// Runs `body` in a child with its own network namespace; returns its exit
// status, or -1 when namespaces are unavailable (not root).
int in_private_netns(const std::function<int()>& body) {
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::unshare(CLONE_NEWNET) != 0) ::_exit(77);
    ::_exit(body());
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status)) return -2;
  return WEXITSTATUS(status) == 77 ? -1 : WEXITSTATUS(status);
}

TEST(NetDevices, RateLimitsReachTheDeviceAsTimerEvents) {
  int rc = in_private_netns([] {
    NetConfig c;
    c.tap = "skiff-rl0";
    c.num_queues = 4;
    c.rate_limiter.bandwidth = {1 << 20, 0, 100};
    c.rate_limiter.ops = {1000, 0, 100};
    auto r = make_virtio_net(c, 1);
    if (!r) {
      fprintf(stderr, "make_virtio_net: %s\n", r.error().what().c_str());
      return 1;
    }
    // Each of the 2 tap queues for reading and writing, and a limiter timer
    // per direction of each pair.
    auto events = (*r)->backend_events();
    if (events.size() != 2 * 2 + 2 * 2) return 2;
    NetConfig plain = c;
    plain.tap = "skiff-rl1";
    plain.rate_limiter = {};
    auto p = make_virtio_net(plain, 1);
    if (!p || (*p)->backend_events().size() != 2 * 2) return 3;
    return 0;
  });
  if (rc == -1) GTEST_SKIP() << "skipped: cannot create a network namespace (needs root)";
  EXPECT_EQ(rc, 0);
}

TEST(NetDevices, VhostOnWithoutVhostNetFallsBackToSkiffsDataPath) {
  int rc = in_private_netns([] {
    NetConfig c;
    c.tap = "skiff-vh0";
    c.vhost = true;
    std::vector<uint8_t> ram(1 << 20);
    auto mem = GuestMemory::create({{0, ram.size(), ram.data()}});
    if (!mem) return 9;
    // Missing, and present but not a vhost device (SET_OWNER fails).
    for (const char* path : {"/nonexistent/vhost-net", "/dev/null"}) {
      auto r = make_net_device(c, 2, *mem, path);
      if (!r) {
        fprintf(stderr, "make_net_device: %s\n", r.error().what().c_str());
        return 1;
      }
      auto* net = dynamic_cast<virtio::VirtioNet*>(r->get());
      if (net == nullptr || net->max_queue_pairs() != 2) return 2;
    }
    return 0;
  });
  if (rc == -1) GTEST_SKIP() << "skipped: cannot create a network namespace (needs root)";
  EXPECT_EQ(rc, 0);
}

TEST(NetDevices, BuildsADeviceOnANewMultiQueueTap) {
  int rc = in_private_netns([] {
    NetConfig c;
    c.tap = "skiff-t0";
    c.mac = "52:54:00:12:34:56";
    c.queue_size = 128;
    auto r = make_virtio_net(c, 3);  // three vCPUs: three pairs
    if (!r) {
      fprintf(stderr, "make_virtio_net: %s\n", r.error().what().c_str());
      return 1;
    }
    virtio::VirtioNet& net = **r;
    if (net.max_queue_pairs() != 3) return 2;
    if (net.num_queues() != 7) return 3;                 // 3 pairs + the control queue
    if (net.backend_events().size() != 2 * 3) return 4;  // each tap queue, rx and tx
    uint8_t mac[6] = {};
    if (!net.read_config(0, mac)) return 7;
    const uint8_t want[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
    if (memcmp(mac, want, 6) != 0) return 5;
    if (::if_nametoindex("skiff-t0") == 0) return 6;  // created in this namespace
    return 0;
  });
  if (rc == -1) GTEST_SKIP() << "skipped: cannot create a network namespace (needs root)";
  EXPECT_EQ(rc, 0);
}

}  // namespace
}  // namespace skiff
