// The API's request handling without KVM: routing, methods, status codes,
// error bodies, and VmConfig JSON parsing, against a fake VMM.
#include "api/api_handler.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "api/event_monitor.h"
#include "api/vm_config_json.h"

namespace skiff::api {
namespace {

using json = nlohmann::json;

// Records calls; answers what the test sets.
class FakeVmm : public VmmControl {
 public:
  VmmResult<> create(const VmConfig& c) override {
    created = c;
    return next;
  }
  VmmResult<> boot() override { return record("boot"); }
  VmmResult<> shutdown() override { return record("shutdown"); }
  VmmResult<> reboot() override { return record("reboot"); }
  VmmResult<> pause() override { return record("pause"); }
  VmmResult<> resume() override { return record("resume"); }
  VmmResult<> power_button() override { return record("power_button"); }
  VmmResult<> delete_vm() override { return record("delete"); }
  VmmResult<VmInfo> info() override {
    calls.push_back("info");
    if (!next) return std::unexpected(next.error());
    return VmInfo{VmState::kPaused, created, created.memory_size};
  }
  VmmResult<CounterMap> counters() override {
    calls.push_back("counters");
    return CounterMap{{"vcpu0", {{"io", 7}}}};
  }
  void shutdown_vmm() override { calls.push_back("shutdown_vmm"); }

  VmmResult<> record(const char* what) {
    calls.push_back(what);
    return next;
  }
  VmmResult<> next;
  VmConfig created;
  std::vector<std::string> calls;
};

constexpr const char* kMinimal = R"({"payload":{"kernel":"/k"}})";

json body_of(const ApiResponse& r) {
  return json::parse(r.body);
}

TEST(ApiHandler, PingAnswersVersionAndPid) {
  FakeVmm vmm;
  auto r = handle(vmm, "GET", "/api/v1/vmm.ping", "");
  ASSERT_EQ(r.status, 200);
  auto j = body_of(r);
  EXPECT_TRUE(j["version"].is_string());
  EXPECT_EQ(j["pid"].get<int64_t>(), getpid());
}

TEST(ApiHandler, UnknownEndpointIs404WithJsonMessage) {
  FakeVmm vmm;
  for (const char* p : {"/api/v1/vm.bogus", "/api/v2/vmm.ping", "/", "", "/api/v1/"}) {
    auto r = handle(vmm, "GET", p, "");
    EXPECT_EQ(r.status, 404) << p;
    EXPECT_EQ(body_of(r)["code"], 404);
    EXPECT_FALSE(body_of(r)["message"].get<std::string>().empty());
  }
}

TEST(ApiHandler, WrongMethodIs405WithAllow) {
  FakeVmm vmm;
  auto r = handle(vmm, "GET", "/api/v1/vm.pause", "");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.allow, "PUT");
  r = handle(vmm, "PUT", "/api/v1/vm.info", "");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.allow, "GET");
  EXPECT_TRUE(vmm.calls.empty()) << "a refused request must not reach the VMM";
}

TEST(ApiHandler, UnimplementedSchemaEndpointsAre501) {
  FakeVmm vmm;
  for (const char* p : {"vm.snapshot", "vm.restore", "vm.add-disk", "vm.send-migration"}) {
    auto r = handle(vmm, "PUT", std::string("/api/v1/") + p, "{}");
    EXPECT_EQ(r.status, 501) << p;
    EXPECT_NE(body_of(r)["message"].get<std::string>().find(p), std::string::npos);
  }
  EXPECT_TRUE(vmm.calls.empty());
}

TEST(ApiHandler, CommandsMapVmmErrorsToStatuses) {
  FakeVmm vmm;
  EXPECT_EQ(handle(vmm, "PUT", "/api/v1/vm.pause", "").status, 204);
  vmm.next = std::unexpected(VmmError{VmmError::Kind::kWrongState, "already paused"});
  auto r = handle(vmm, "PUT", "/api/v1/vm.pause", "");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(body_of(r)["message"], "already paused");
  vmm.next = std::unexpected(VmmError{VmmError::Kind::kNotCreated, "no VM"});
  EXPECT_EQ(handle(vmm, "PUT", "/api/v1/vm.boot", "").status, 404);
  EXPECT_EQ(handle(vmm, "GET", "/api/v1/vm.info", "").status, 404);
  vmm.next = std::unexpected(VmmError{VmmError::Kind::kAlreadyExists, "exists"});
  EXPECT_EQ(handle(vmm, "PUT", "/api/v1/vm.create", kMinimal).status, 409);
  vmm.next = std::unexpected(VmmError{VmmError::Kind::kHost, "kvm"});
  EXPECT_EQ(handle(vmm, "PUT", "/api/v1/vm.reboot", "").status, 500);
}

TEST(ApiHandler, InfoReportsConfigAndState) {
  FakeVmm vmm;
  ASSERT_EQ(handle(vmm, "PUT", "/api/v1/vm.create",
                   R"({"payload":{"kernel":"/k","cmdline":"c"},"memory":{"size":16777216},
                       "cpus":{"boot_vcpus":2,"max_vcpus":2},"serial":{"mode":"File","file":"/f"}})")
                .status,
            204);
  auto r = handle(vmm, "GET", "/api/v1/vm.info", "");
  ASSERT_EQ(r.status, 200);
  auto j = body_of(r);
  EXPECT_EQ(j["state"], "Paused");
  EXPECT_EQ(j["memory_actual_size"], 16777216);
  EXPECT_EQ(j["config"]["cpus"]["boot_vcpus"], 2);
  EXPECT_EQ(j["config"]["payload"]["cmdline"], "c");
  EXPECT_EQ(j["config"]["serial"]["mode"], "File");
  EXPECT_EQ(j["config"]["serial"]["file"], "/f");
}

TEST(ApiHandler, CountersAreNestedObjectsOfIntegers) {
  FakeVmm vmm;
  auto r = handle(vmm, "GET", "/api/v1/vm.counters", "");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(body_of(r)["vcpu0"]["io"], 7);
}

TEST(ApiHandler, VmmShutdownReachesTheVmm) {
  FakeVmm vmm;
  EXPECT_EQ(handle(vmm, "PUT", "/api/v1/vmm.shutdown", "").status, 204);
  EXPECT_EQ(vmm.calls, std::vector<std::string>{"shutdown_vmm"});
}

// ---- VmConfig JSON ----

std::string error_of(std::string_view body) {
  auto r = parse_vm_config_text(body);
  return r ? std::string() : r.error().what();
}

TEST(VmConfigJson, ParsesSupportedFields) {
  auto c = parse_vm_config_text(R"({"payload":{"kernel":"/k","initramfs":"/i","cmdline":"x=1"},
      "cpus":{"boot_vcpus":4,"max_vcpus":4,"kvm_hyperv":false,"nested":true},
      "memory":{"size":268435456,"shared":false,"thp":true},
      "serial":{"mode":"Pty"},"console":{"mode":"Off"},"disks":[],"iommu":false})");
  ASSERT_TRUE(c) << c.error().what();
  EXPECT_EQ(c->kernel, "/k");
  EXPECT_EQ(c->initramfs, "/i");
  EXPECT_EQ(c->cmdline, "x=1");
  EXPECT_EQ(c->boot_cpus, 4u);
  EXPECT_EQ(c->memory_size, 268435456u);
  EXPECT_EQ(c->serial, "pty");
}

TEST(VmConfigJson, SerialModesMapToSkiffValues) {
  auto mode = [](const std::string& serial) {
    auto c = parse_vm_config_text(R"({"payload":{"kernel":"/k"},"serial":)" + serial + "}");
    return c ? c->serial : "error: " + c.error().what();
  };
  EXPECT_EQ(mode(R"({"mode":"Tty"})"), "tty");
  EXPECT_EQ(mode(R"({"mode":"Off"})"), "off");
  EXPECT_EQ(mode(R"({"mode":"Null"})"), "off");
  EXPECT_EQ(mode(R"({"mode":"File","file":"/tmp/x"})"), "file=/tmp/x");
  EXPECT_NE(mode(R"({"mode":"File"})").find("serial.file: required"), std::string::npos);
  EXPECT_NE(mode(R"({"mode":"Socket","socket":"/s"})").find("not supported yet"),
            std::string::npos);
  EXPECT_NE(mode(R"({"mode":"Banana"})").find("'Banana'"), std::string::npos);
  // The default when absent is the schema's Null.
  EXPECT_EQ(parse_vm_config_text(kMinimal)->serial, "off");
}

TEST(VmConfigJson, ErrorsNameTheField) {
  EXPECT_NE(error_of("{").find("malformed JSON"), std::string::npos);
  EXPECT_NE(error_of("[]").find("expected a JSON object"), std::string::npos);
  EXPECT_NE(error_of("{}").find("VmConfig.payload: required"), std::string::npos);
  EXPECT_NE(error_of(R"({"payload":{}})").find("payload.kernel: required"), std::string::npos);
  EXPECT_NE(error_of(R"({"payload":{"kernel":"/k"},"bogus":1})").find("unknown field 'bogus'"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"payload":{"kernel":"/k","x":1}})").find("payload: unknown field 'x'"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"payload":{"kernel":7}})").find("payload.kernel: expected a string"),
            std::string::npos);
}

TEST(VmConfigJson, ImpossibleValuesAreRefused) {
  auto cpus = [](const char* v) {
    return error_of(std::string(R"({"payload":{"kernel":"/k"},"cpus":)") + v + "}");
  };
  EXPECT_NE(cpus(R"({"boot_vcpus":0,"max_vcpus":0})").find("cpus.boot_vcpus: 0 is out of range"),
            std::string::npos);
  EXPECT_NE(cpus(R"({"boot_vcpus":-1})").find("out of range"), std::string::npos);
  EXPECT_NE(cpus(R"({"boot_vcpus":256})").find("out of range"), std::string::npos);
  EXPECT_NE(cpus(R"({"boot_vcpus":1.5})").find("expected an integer"), std::string::npos);
  EXPECT_NE(cpus(R"({"boot_vcpus":"2"})").find("expected an integer"), std::string::npos);
  EXPECT_NE(cpus(R"({"boot_vcpus":2,"max_vcpus":1})").find("below boot_vcpus"), std::string::npos);
  // max above boot is accepted (hotpluggable in the MADT); Hyper-V is not.
  EXPECT_EQ(cpus(R"({"boot_vcpus":1,"max_vcpus":4})"), "");
  EXPECT_NE(cpus(R"({"boot_vcpus":1,"kvm_hyperv":true})").find("not supported yet"),
            std::string::npos);
  auto mem = [](const char* v) {
    return error_of(std::string(R"({"payload":{"kernel":"/k"},"memory":)") + v + "}");
  };
  EXPECT_NE(mem(R"({"size":4096})").find("memory.size: 4096 is out of range"), std::string::npos);
  EXPECT_NE(mem(R"({"size":18446744073709551615})").find("out of range"), std::string::npos);
  EXPECT_NE(mem(R"({"size":16777217})").find("size=16777217 is not a multiple of 4 KiB"),
            std::string::npos);
  EXPECT_NE(mem(R"({})").find("memory.size: required"), std::string::npos);
}

TEST(VmConfigJson, DevicesSkiffLacksAreRefusedNotIgnored) {
  auto err = [](const char* extra) {
    return error_of(std::string(R"({"payload":{"kernel":"/k"},)") + extra + "}");
  };
  EXPECT_NE(err(R"("disks":[{"path":"/d","iommu":true}])")
                .find("disks[0].iommu: an IOMMU is not supported yet"),
            std::string::npos);
  EXPECT_NE(err(R"("net":[{"tap":"t","vhost_user":true}])")
                .find("net[0].vhost_user: vhost-user net front ends is not supported yet"),
            std::string::npos);
  EXPECT_NE(
      err(R"("vsock":{"cid":3,"socket":"/v"})").find("vsock: virtio-vsock is not supported yet"),
      std::string::npos);
  EXPECT_NE(err(R"("memory":{"size":16777216,"reserve":true})").find("memory.reserve"),
            std::string::npos);
  EXPECT_NE(err(R"("console":{"mode":"Socket","socket":"/s"})").find("console.mode: Socket"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"payload":{"kernel":"/k","firmware":"/f"}})")
                .find("payload.firmware: booting firmware is not supported yet"),
            std::string::npos);
  EXPECT_NE(err(R"("iommu":true)").find("iommu: an IOMMU is not supported yet"), std::string::npos);
  EXPECT_NE(err(R"("iommu":1)").find("expected a boolean"), std::string::npos);
}

TEST(VmConfigJson, ConsoleModesMapToTheVirtioConsole) {
  auto console = [](const std::string& extra) -> std::string {
    auto c = parse_vm_config_text(R"({"payload":{"kernel":"/k"},)" + extra + "}");
    if (!c) return "error: " + c.error().what();
    return c->console ? c->console->backend : "none";
  };
  EXPECT_EQ(console(R"("console":{"mode":"Off"})"), "none");
  EXPECT_EQ(console(R"("console":{"mode":"Null"})"), "off");  // device present, output dropped
  EXPECT_EQ(console(R"("console":{"mode":"Tty"})"), "tty");
  EXPECT_EQ(console(R"("console":{"mode":"Pty"})"), "pty");
  EXPECT_EQ(console(R"("console":{"mode":"File","file":"/tmp/c"})"), "file=/tmp/c");
  EXPECT_EQ(console(R"("console":{"mode":"Off"},"serial":{"mode":"Tty"})"), "none");
  // Absent: no virtio-console (skiff's default, unlike Cloud Hypervisor's Tty).
  EXPECT_EQ(console(R"("serial":{"mode":"Tty"})"), "none");
  EXPECT_NE(console(R"("console":{"mode":"File"})").find("console.file: required"),
            std::string::npos);
  EXPECT_NE(console(R"("console":{"mode":"Tty"},"serial":{"mode":"Tty"})")
                .find("console.mode: Tty and serial.mode Tty"),
            std::string::npos);
  EXPECT_NE(console(R"("console":{"mode":"Tty","iommu":true})").find("console.iommu"),
            std::string::npos);
}

TEST(VmConfigJson, RoundTripsThroughTheInfoRepresentation) {
  VmConfig c;
  c.kernel = "/k";
  c.cmdline = "a b";
  c.boot_cpus = 3;
  c.memory_size = 32 << 20;
  c.serial = "file=/x";
  c.console = ConsoleConfig{"pty"};
  auto back = parse_vm_config(vm_config_to_json(c));
  ASSERT_TRUE(back) << back.error().what();
  EXPECT_EQ(back->kernel, c.kernel);
  EXPECT_EQ(back->cmdline, c.cmdline);
  EXPECT_EQ(back->boot_cpus, c.boot_cpus);
  EXPECT_EQ(back->memory_size, c.memory_size);
  EXPECT_EQ(back->serial, c.serial);
  ASSERT_TRUE(back->console);
  EXPECT_EQ(back->console->backend, "pty");
}

TEST(EventMonitor, LineIsCloudHypervisorShapedJson) {
  auto line = EventMonitor::format({"vm", "paused", {}}, std::chrono::nanoseconds(1'500'000'123));
  auto j = json::parse(line);
  EXPECT_EQ(j["source"], "vm");
  EXPECT_EQ(j["event"], "paused");
  EXPECT_TRUE(j["properties"].is_null());
  EXPECT_EQ(j["timestamp"]["secs"], 1);
  EXPECT_EQ(j["timestamp"]["nanos"], 500'000'123);
  EXPECT_EQ(line.find('\n'), std::string::npos);
}

}  // namespace
}  // namespace skiff::api
