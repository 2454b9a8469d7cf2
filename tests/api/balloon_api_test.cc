// The balloon's part of the API without KVM: vm.resize desired_balloon
// reaches the VMM, CPU/RAM resizing is 501, bad bodies are 400, the
// BalloonConfig JSON round-trips, and VmmService keeps the target of a VM
// that is created but not booted.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "api/api_handler.h"
#include "api/vm_config_json.h"
#include "api_fuzz_body.h"

namespace skiff::api {
namespace {

using json = nlohmann::json;

// Accepts everything (the fuzz target's VMM) and records balloon resizes.
class ResizeVmm : public fuzz::AcceptingVmm {
 public:
  VmmResult<> resize_balloon(uint64_t bytes) override {
    resized.push_back(bytes);
    return next;
  }
  std::vector<uint64_t> resized;
  VmmResult<> next;
};

ApiResponse put_resize(VmmControl& vmm, std::string_view body) {
  return handle(vmm, "PUT", "/api/v1/vm.resize", body);
}

TEST(BalloonApi, ResizeDesiredBalloonReachesTheVmm) {
  ResizeVmm vmm;
  EXPECT_EQ(put_resize(vmm, R"({"desired_balloon": 268435456})").status, 204);
  EXPECT_EQ(put_resize(vmm, R"({"desired_balloon": 0, "desired_vcpus": null})").status, 204);
  EXPECT_EQ(vmm.resized, (std::vector<uint64_t>{256u << 20, 0}));
}

TEST(BalloonApi, ResizeErrorsComeFromTheVmm) {
  ResizeVmm vmm;
  vmm.next = std::unexpected(VmmError{VmmError::Kind::kInvalidConfig, "no balloon"});
  auto r = put_resize(vmm, R"({"desired_balloon": 4096})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("no balloon"), std::string::npos);
  vmm.next = std::unexpected(VmmError{VmmError::Kind::kNotCreated, "no VM"});
  EXPECT_EQ(put_resize(vmm, R"({"desired_balloon": 4096})").status, 404);
}

TEST(BalloonApi, CpuAndRamResizingAre501) {
  ResizeVmm vmm;
  for (const char* body : {R"({"desired_vcpus": 2})", R"({"desired_ram": 1073741824})",
                           R"({"desired_ram": 1073741824, "desired_balloon": 0})"}) {
    auto r = put_resize(vmm, body);
    EXPECT_EQ(r.status, 501) << body;
    EXPECT_NE(r.body.find("desired_"), std::string::npos) << r.body;
  }
  EXPECT_TRUE(vmm.resized.empty());
}

TEST(BalloonApi, BadResizeBodiesAre400AndNameTheProblem) {
  ResizeVmm vmm;
  for (const char* body :
       {"", "{", "[]", "{}", R"({"desired_balloon": -1})", R"({"desired_balloon": 1.5})",
        R"({"desired_balloon": "1G"})", R"({"desired_balloon": 1, "bogus": 1})",
        "{\"desired_balloon\": \"\xff\"}"}) {
    auto r = put_resize(vmm, body);
    EXPECT_EQ(r.status, 400) << body;
    EXPECT_EQ(json::parse(r.body)["code"], 400);
  }
  EXPECT_TRUE(vmm.resized.empty());
  EXPECT_EQ(handle(vmm, "GET", "/api/v1/vm.resize", "").status, 405);
}

TEST(BalloonApi, VmmWithoutBalloonSupportRefusesResize) {
  // The VmmControl default: a VMM that cannot balloon says so.
  struct Plain : ResizeVmm {
    VmmResult<> resize_balloon(uint64_t b) override { return VmmControl::resize_balloon(b); }
  } vmm;
  EXPECT_EQ(put_resize(vmm, R"({"desired_balloon": 4096})").status, 400);
}

TEST(BalloonConfigJson, ParsesAndRoundTrips) {
  auto c = parse_vm_config_text(
      R"({"payload":{"kernel":"/k"},"memory":{"size":1073741824},
          "balloon":{"size":268435456,"deflate_on_oom":true,"free_page_reporting":true,"id":"b0"}})");
  ASSERT_TRUE(c) << c.error().what();
  ASSERT_TRUE(c->balloon);
  EXPECT_EQ(c->balloon->size, 256u << 20);
  EXPECT_TRUE(c->balloon->deflate_on_oom);
  EXPECT_TRUE(c->balloon->free_page_reporting);
  json j = vm_config_to_json(*c);
  EXPECT_EQ(j["balloon"]["size"], 256u << 20);
  auto again = parse_vm_config(j);
  ASSERT_TRUE(again) << again.error().what();
  ASSERT_TRUE(again->balloon);
  EXPECT_EQ(again->balloon->size, 256u << 20);
  EXPECT_TRUE(again->balloon->free_page_reporting);
  // No balloon: no "balloon" key.
  auto none = parse_vm_config_text(R"({"payload":{"kernel":"/k"}})");
  ASSERT_TRUE(none);
  EXPECT_FALSE(none->balloon);
  EXPECT_FALSE(vm_config_to_json(*none).contains("balloon"));
}

TEST(BalloonConfigJson, BadBalloonsAreRefusedWithTheField) {
  for (
      auto [body, word] : std::vector<std::pair<const char*, const char*>>{
          {R"({"payload":{"kernel":"/k"},"balloon":{}})", "balloon.size"},
          {R"({"payload":{"kernel":"/k"},"memory":{"size":67108864},"balloon":{"size":134217728}})",
           "balloon.size"},
          {R"({"payload":{"kernel":"/k"},"balloon":{"size":-1}})", "balloon.size"},
          {R"({"payload":{"kernel":"/k"},"balloon":{"size":0,"deflate_on_oom":"yes"}})",
           "balloon.deflate_on_oom"},
          {R"({"payload":{"kernel":"/k"},"balloon":{"size":0,"iommu":true}})", "balloon.iommu"},
          {R"({"payload":{"kernel":"/k"},"balloon":{"size":0,"polling":1}})", "polling"}}) {
    auto c = parse_vm_config_text(body);
    ASSERT_FALSE(c) << body;
    EXPECT_NE(c.error().what().find(word), std::string::npos) << c.error().what();
  }
}

TEST(BalloonVmmService, ResizeBeforeBootChangesTheConfig) {
  VmmService svc;
  EXPECT_EQ(svc.resize_balloon(4096).error().kind, VmmError::Kind::kNotCreated);
  VmConfig c;
  c.kernel = "/nonexistent";
  c.memory_size = 64 << 20;
  ASSERT_TRUE(svc.create(c));
  auto no_balloon = svc.resize_balloon(4096);
  ASSERT_FALSE(no_balloon);
  EXPECT_EQ(no_balloon.error().kind, VmmError::Kind::kInvalidConfig);
  EXPECT_NE(no_balloon.error().message.find("--balloon"), std::string::npos);
  ASSERT_TRUE(svc.delete_vm());

  c.balloon = BalloonConfig{};
  ASSERT_TRUE(svc.create(c));
  ASSERT_TRUE(svc.resize_balloon(16 << 20));
  EXPECT_EQ(svc.info()->config.balloon->size, 16u << 20);
  EXPECT_EQ(svc.info()->memory_actual_size, 64u << 20) << "nothing inflated before boot";
  auto too_big = svc.resize_balloon(65 << 20);
  ASSERT_FALSE(too_big);
  EXPECT_EQ(too_big.error().kind, VmmError::Kind::kInvalidConfig);
  EXPECT_EQ(svc.info()->config.balloon->size, 16u << 20);
}

}  // namespace
}  // namespace skiff::api
