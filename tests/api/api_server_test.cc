// The API server's HTTP layer (api_server.cc over http_io.cc) against a fake
// VMM, on a real Unix socket, without KVM: what the curl tests in
// test_api.py check end to end on a KVM host, here on any host.
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "api/api_server.h"
#include "api/http_io.h"
#include "api_fuzz_body.h"

namespace skiff::api {
namespace {

using namespace std::chrono_literals;

// Counts pauses, so a test can see a request reached the VMM.
class CountingVmm : public fuzz::AcceptingVmm {
 public:
  VmmResult<> pause() override {
    ++pauses;
    return {};
  }
  std::atomic<int> pauses{0};
};

class ApiServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("skiff-api-server-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "api.sock").string();
    auto s = ApiServer::start({path_, -1}, vmm_);
    ASSERT_TRUE(s) << s.error().what();
    server_ = std::move(*s);
  }
  void TearDown() override {
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  Fd connect() {
    auto fd = connect_unix(path_);
    EXPECT_TRUE(fd) << fd.error().what();
    return fd ? std::move(*fd) : Fd();
  }
  // Sends raw bytes, reads until the server closes or `until` appears.
  std::string raw(const std::string& bytes, const std::string& until = "") {
    Fd fd = connect();
    EXPECT_EQ(::send(fd.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
    std::string got;
    char buf[4096];
    timeval tv{5, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    for (;;) {
      ssize_t n = ::read(fd.get(), buf, sizeof buf);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
      if (!until.empty() && got.find(until) != std::string::npos) break;
    }
    return got;
  }

  std::filesystem::path dir_;
  std::string path_;
  CountingVmm vmm_;
  std::unique_ptr<ApiServer> server_;
};

int json_code(const std::string& body) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  return j.is_object() && j.contains("code") ? j["code"].get<int>() : -1;
}

TEST_F(ApiServerTest, KeepAliveConnectionCarriesManyRequests) {
  Fd fd = connect();
  HttpConnection c(fd.get());
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(c.write_request("GET", "/api/v1/vmm.ping", ""));
    auto r = c.read_response(5s);
    ASSERT_TRUE(r) << r.error().what();
    EXPECT_EQ(r->status, 200);
    EXPECT_TRUE(r->keep_alive);
    EXPECT_NE(r->body.find("\"pid\""), std::string::npos) << r->body;
    ASSERT_TRUE(c.write_request("PUT", "/api/v1/vm.pause", ""));
    r = c.read_response(5s);
    ASSERT_TRUE(r) << r.error().what();
    EXPECT_EQ(r->status, 204) << r->body;
    EXPECT_TRUE(r->body.empty());
  }
  EXPECT_EQ(vmm_.pauses.load(), 50);
}

TEST_F(ApiServerTest, HandlerErrorsPassThroughWithAllowHeader) {
  Fd fd = connect();
  HttpConnection c(fd.get());
  ASSERT_TRUE(c.write_request("DELETE", "/api/v1/vmm.ping", ""));
  auto r = c.read_response(5s);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 405);
  EXPECT_EQ(r->allow, "GET");
  EXPECT_EQ(json_code(r->body), 405);
  // The query string is not part of the endpoint's name.
  ASSERT_TRUE(c.write_request("GET", "/api/v1/vmm.ping?verbose=1", ""));
  r = c.read_response(5s);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(ApiServerTest, PutWithoutContentLengthHasAnEmptyBody) {
  // What `curl -X PUT` sends: no Content-Length, no chunked encoding.
  std::string got = raw("PUT /api/v1/vm.pause HTTP/1.1\r\nHost: x\r\n\r\n", "\r\n\r\n");
  EXPECT_EQ(got.rfind("HTTP/1.1 204", 0), 0u) << got;
  EXPECT_EQ(vmm_.pauses.load(), 1);
}

TEST_F(ApiServerTest, ChunkedBodyIsAssembled) {
  // A VmConfig whose bad field name is split across two chunks: the
  // handler can only name it if it saw the whole body.
  std::string one = R"({"payload":{"kernel":"/k"},"cpus":{"boot_vcpus":1,"tu)";
  std::string two = R"(rbo":1}})";
  auto chunk = [](const std::string& c) { return fmt::format("{:x}\r\n{}\r\n", c.size(), c); };
  std::string got =
      raw("PUT /api/v1/vm.create HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
          "Connection: close\r\n\r\n" +
          chunk(one) + chunk(two) + "0\r\n\r\n");
  EXPECT_EQ(got.rfind("HTTP/1.1 400", 0), 0u) << got;
  EXPECT_NE(got.find("turbo"), std::string::npos) << got;
}

TEST_F(ApiServerTest, ExpectContinueGetsA100BeforeTheBody) {
  Fd fd = connect();
  std::string head =
      "PUT /api/v1/vm.pause HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
      "Content-Length: 2\r\n\r\n";
  ASSERT_EQ(::send(fd.get(), head.data(), head.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(head.size()));
  char buf[256] = {};
  ssize_t n = ::read(fd.get(), buf, sizeof buf - 1);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(n)), "HTTP/1.1 100 Continue\r\n\r\n");
  ASSERT_EQ(::send(fd.get(), "{}", 2, MSG_NOSIGNAL), 2);
  HttpConnection c(fd.get());
  auto r = c.read_response(5s);
  ASSERT_TRUE(r) << r.error().what();
  EXPECT_EQ(r->status, 204);
}

TEST_F(ApiServerTest, HttpLayerRefusalsHaveJsonBodies) {
  std::string got = raw("NOT HTTP AT ALL\r\n\r\n");
  EXPECT_EQ(got.rfind("HTTP/1.1 400", 0), 0u) << got;
  EXPECT_EQ(json_code(got.substr(got.find("\r\n\r\n") + 4)), 400) << got;

  got = raw("PUT /api/v1/vm.create HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n{");
  EXPECT_EQ(got.rfind("HTTP/1.1 413", 0), 0u) << got;
  EXPECT_EQ(json_code(got.substr(got.find("\r\n\r\n") + 4)), 413) << got;

  got = raw("GET /api/v1/vmm.ping HTTP/1.1\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n");
  EXPECT_EQ(got.rfind("HTTP/1.1 431", 0), 0u) << got;
  // The server still serves after each refusal.
  got = raw("GET /api/v1/vmm.ping HTTP/1.1\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(got.rfind("HTTP/1.1 200", 0), 0u) << got;
}

TEST_F(ApiServerTest, ConnectionsBeyondTheLimitGet503AndOthersKeepWorking) {
  std::vector<Fd> idle;
  for (int i = 0; i < 16; ++i) idle.push_back(connect());
  // The 17th is refused once the acceptor has taken the first 16.
  std::string got = raw("GET /api/v1/vmm.ping HTTP/1.1\r\n\r\n");
  EXPECT_EQ(got.rfind("HTTP/1.1 503", 0), 0u) << got;
  idle.pop_back();
  // A closed connection's slot is reaped at the next accept; retry briefly.
  bool served = false;
  for (int i = 0; i < 50 && !served; ++i) {
    got = raw("GET /api/v1/vmm.ping HTTP/1.1\r\nConnection: close\r\n\r\n");
    served = got.rfind("HTTP/1.1 200", 0) == 0;
    if (!served) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(served) << got;
}

TEST_F(ApiServerTest, StopEndsIdleConnectionsPromptlyAndRemovesTheSocket) {
  std::vector<Fd> idle;
  for (int i = 0; i < 4; ++i) idle.push_back(connect());
  std::this_thread::sleep_for(50ms);  // let the acceptor take them
  auto t0 = std::chrono::steady_clock::now();
  server_->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  EXPECT_FALSE(std::filesystem::exists(path_));
  // Each idle client sees its connection closed.
  char b;
  for (auto& fd : idle) EXPECT_EQ(::read(fd.get(), &b, 1), 0);
}

TEST_F(ApiServerTest, ClientReportsAClosedConnection) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  Fd a(sv[0]), b(sv[1]);
  std::string partial = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
  ASSERT_EQ(::write(b.get(), partial.data(), partial.size()), static_cast<ssize_t>(partial.size()));
  b = Fd();
  HttpConnection c(a.get());
  auto r = c.read_response(2s);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().what().find("closed"), std::string::npos) << r.error().what();
}

}  // namespace
}  // namespace skiff::api
