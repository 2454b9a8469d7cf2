// The VmConfig JSON "rng" object (Cloud Hypervisor's RngConfig) to
// VmConfig::rng and back through vm_config_to_json (vm.info).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "api/vm_config_json.h"

namespace skiff::api {
namespace {

Result<VmConfig> with_rng(const std::string& rng) {
  return parse_vm_config_text(R"({"payload":{"kernel":"/k"},"rng":)" + rng + "}");
}

std::string rng_error(const std::string& rng) {
  auto r = with_rng(rng);
  return r ? std::string("(parsed)") : r.error().what();
}

TEST(RngConfigJson, SourceBecomesTheDeviceAndShowsInInfo) {
  auto c = with_rng(R"({"src":"/dev/hwrng","id":"rng0","iommu":false,"pci_segment":0})");
  ASSERT_TRUE(c) << c.error().what();
  ASSERT_TRUE(c->rng.has_value());
  EXPECT_EQ(c->rng->source, "/dev/hwrng");
  EXPECT_EQ(vm_config_to_json(*c)["rng"]["src"], "/dev/hwrng");
}

TEST(RngConfigJson, NoRngObjectNoDevice) {
  auto c = parse_vm_config_text(R"({"payload":{"kernel":"/k"}})");
  ASSERT_TRUE(c) << c.error().what();
  EXPECT_FALSE(c->rng.has_value());
  EXPECT_FALSE(vm_config_to_json(*c).contains("rng"));
}

TEST(RngConfigJson, GetrandomIsReportedAsUrandom) {
  VmConfig c;
  c.kernel = "/k";
  c.rng = RngConfig{};  // --rng without src: getrandom(2)
  EXPECT_EQ(vm_config_to_json(c)["rng"]["src"], "/dev/urandom");
}

TEST(RngConfigJson, BadValuesAreRefusedByName) {
  EXPECT_NE(rng_error("{}").find("rng.src: required"), std::string::npos) << rng_error("{}");
  EXPECT_NE(rng_error(R"({"src":""})").find("rng.src"), std::string::npos);
  EXPECT_NE(rng_error(R"({"src":7})").find("rng"), std::string::npos);
  EXPECT_NE(rng_error(R"({"src":"/dev/urandom","iommu":true})").find("IOMMU"), std::string::npos);
  EXPECT_NE(rng_error(R"({"src":"/dev/urandom","turbo":1})").find("turbo"), std::string::npos);
  EXPECT_NE(rng_error(R"("/dev/urandom")").find("rng"), std::string::npos);
}

}  // namespace
}  // namespace skiff::api
