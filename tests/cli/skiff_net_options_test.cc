// --net (virtio-net on PCI): Cloud Hypervisor's spelling, errors naming the
// bad value.
#include <gtest/gtest.h>

#include "cli/skiff_options.h"

namespace skiff::cli {
namespace {

std::variant<SkiffArgs, EarlyExit> parse(std::vector<std::string> args) {
  args.insert(args.begin(), {"skiff", "--kernel", "/k"});
  return parse_skiff_args(args);
}

// The usage error for one --net value ("" when it parsed).
std::string net_error(const std::string& value) {
  auto r = parse({"--net", value});
  auto* e = std::get_if<EarlyExit>(&r);
  if (!e) return "";
  EXPECT_EQ(e->status, 2) << value;
  return e->text;
}

TEST(SkiffNetOptions, RepeatedNetsKeepTheirOrderAndSettings) {
  auto r = parse({"--net", "tap=tap0", "--net",
                  "fd=[3,4],mac=52:54:00:AB:cd:01,queue_size=512,vhost=on,id=uplink"});
  auto* a = std::get_if<SkiffArgs>(&r);
  ASSERT_NE(a, nullptr) << std::get<EarlyExit>(r).text;
  ASSERT_EQ(a->vm.nets.size(), 2u);
  const NetConfig& t = a->vm.nets[0];
  EXPECT_EQ(t.tap, "tap0");
  EXPECT_TRUE(t.fds.empty());
  EXPECT_EQ(t.mac, "");
  EXPECT_EQ(t.num_queues, 0);  // one pair per vCPU, decided by the vmm
  EXPECT_EQ(t.queue_size, 256);
  EXPECT_FALSE(t.vhost);
  EXPECT_FALSE(t.rate_limiter.limits());
  const NetConfig& f = a->vm.nets[1];
  EXPECT_EQ(f.tap, "");
  EXPECT_EQ(f.fds, (std::vector<int>{3, 4}));
  EXPECT_EQ(f.num_queues, 4);  // two fds: two pairs
  EXPECT_EQ(f.mac, "52:54:00:AB:cd:01");
  EXPECT_EQ(f.queue_size, 512);
  EXPECT_TRUE(f.vhost);
  EXPECT_EQ(f.id, "uplink");
}

TEST(SkiffNetOptions, NumQueuesCountsBothDirections) {
  auto r = parse({"--net", "tap=t,num_queues=8", "--net", "fd=5,num_queues=2"});
  auto* a = std::get_if<SkiffArgs>(&r);
  ASSERT_NE(a, nullptr) << std::get<EarlyExit>(r).text;
  EXPECT_EQ(a->vm.nets[0].num_queues, 8);
  EXPECT_EQ(a->vm.nets[1].fds, std::vector<int>{5});
  EXPECT_NE(net_error("tap=t,num_queues=3").find("num_queues=3 is odd"), std::string::npos);
  EXPECT_NE(net_error("tap=t,num_queues=1").find("--net num_queues: 1 is out of range"),
            std::string::npos);
  EXPECT_NE(net_error("tap=t,num_queues=130").find("130 is out of range"), std::string::npos);
  EXPECT_NE(net_error("fd=[3,4],num_queues=2").find("num_queues=2 does not match fd=[3,4]"),
            std::string::npos);
}

TEST(SkiffNetOptions, RateLimiterKeysBuildTokenBuckets) {
  auto r = parse({"--net",
                  "tap=t,bw_size=1M,bw_refill_time=100,bw_one_time_burst=64K,ops_size=1000,"
                  "ops_refill_time=10"});
  auto* a = std::get_if<SkiffArgs>(&r);
  ASSERT_NE(a, nullptr) << std::get<EarlyExit>(r).text;
  const net::RateLimiterConfig& rl = a->vm.nets[0].rate_limiter;
  EXPECT_EQ(rl.bandwidth, (net::TokenBucketConfig{1 << 20, 64 << 10, 100}));
  EXPECT_EQ(rl.ops, (net::TokenBucketConfig{1000, 0, 10}));
  EXPECT_NE(net_error("tap=t,bw_size=1000").find("bw_size and bw_refill_time"), std::string::npos);
  EXPECT_NE(net_error("tap=t,ops_refill_time=5").find("ops_size and ops_refill_time"),
            std::string::npos);
  EXPECT_NE(net_error("tap=t,ops_size=0,ops_refill_time=5").find("ops_size=0"), std::string::npos);
  EXPECT_NE(net_error("tap=t,ops_size=1K,ops_refill_time=5").find("'1K' is not a number"),
            std::string::npos);
  EXPECT_NE(net_error("tap=t,bw_size=lots,bw_refill_time=5").find("'lots'"), std::string::npos);
}

TEST(SkiffNetOptions, BadValuesAreUsageErrorsNamingTheValue) {
  struct Case {
    const char* value;
    const char* expected;
  } cases[] = {
      {"mac=52:54:00:12:34:56", "exactly one of tap=NAME or fd="},
      {"tap=a,fd=3", "exactly one of tap=NAME or fd="},
      {"tap=", "tap= is not a valid interface name"},
      {"tap=averyveryverylongname", "tap=averyveryverylongname is not a valid"},
      {"tap=a/b", "tap=a/b is not a valid"},
      {"fd=[3,3]", "lists fd 3 twice"},
      {"fd=[3,x]", "'x' is not a number"},
      {"fd=[3,4", "unbalanced '['"},
      {"fd=[]", "'' is not a number"},
      {"tap=t,mac=52:54:00:12:34", "'52:54:00:12:34' is not six hex octets"},
      {"tap=t,mac=52-54-00-12-34-56", "'52-54-00-12-34-56' is not six hex"},
      {"tap=t,mac=zz:54:00:12:34:56", "'zz:54:00:12:34:56' is not six hex"},
      {"tap=t,mac=01:00:5e:00:00:01", "01:00:5e:00:00:01 is a multicast address"},
      {"tap=t,mac=00:00:00:00:00:00", "all-zero"},
      {"tap=t,queue_size=100", "queue_size=100 is not a power of 2"},
      {"tap=t,queue_size=65536", "65536 is out of range"},
      {"tap=t,vhost=maybe", "'maybe' is not on or off"},
      {"tap=t,vhost=on,bw_size=1000,bw_refill_time=10", "vhost=on and bw_*/ops_* rate limits"},
      {"tap=t,queues=2", "unknown key 'queues'"},
      {"tap=t,tap=u", "key 'tap' given twice"},
  };
  for (const Case& c : cases) {
    std::string err = net_error(c.value);
    EXPECT_NE(err.find("--net"), std::string::npos) << c.value << ": " << err;
    EXPECT_NE(err.find(c.expected), std::string::npos) << c.value << ": " << err;
  }
}

TEST(SkiffNetOptions, HelpDescribesNet) {
  auto r = parse({"--help"});
  auto* e = std::get_if<EarlyExit>(&r);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->status, 0);
  for (const char* word :
       {"--net", "tap=NAME", "fd=[N,...]", "num_queues", "vhost=on", "bw_size", "ops_refill_time"})
    EXPECT_NE(e->text.find(word), std::string::npos) << word;
}

}  // namespace
}  // namespace skiff::cli
