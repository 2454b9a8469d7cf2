#include "api/api_server.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "api/api_handler.h"
#include "base/log.h"

namespace skiff::api {

namespace {

// Request bodies are VmConfig JSON: a few KiB. Larger is refused with 413
// before it is read into memory.
constexpr size_t kMaxBody = 1 << 20;
constexpr int kBacklog = 64;

// The adapter: serve a listening socket that we created or inherited.
class UnixSocketServer : public httplib::Server {
 public:
  void adopt(int fd) { svr_sock_ = fd; }
};

}  // namespace

Result<Fd> listen_unix(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path))
    return fail("API socket path '{}' must be 1-{} bytes", path, sizeof(addr.sun_path) - 1);
  path.copy(addr.sun_path, path.size());
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    // A socket file left by an earlier skiff is replaced, as Cloud
    // Hypervisor does; anything else at the path is the user's and kept.
    if (!S_ISSOCK(st.st_mode)) return fail("API socket path '{}' exists and is not a socket", path);
    if (::unlink(path.c_str()) != 0) return fail_errno("cannot remove stale API socket '{}'", path);
  }
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return fail_errno("cannot create the API socket");
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
    return fail_errno("cannot bind the API socket to '{}'", path);
  if (::listen(fd.get(), kBacklog) != 0)
    return fail_errno("cannot listen on API socket '{}'", path);
  return fd;
}

Result<> check_listening_unix_fd(int fd) {
  int domain = 0, type = 0, listening = 0;
  socklen_t len = sizeof(int);
  if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0)
    return fail_errno("--api-socket fd={}: not a socket", fd);
  len = sizeof(int);
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0)
    return fail_errno("--api-socket fd={}: not a socket", fd);
  len = sizeof(int);
  if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0)
    return fail_errno("--api-socket fd={}: not a socket", fd);
  if (domain != AF_UNIX || type != SOCK_STREAM)
    return fail("--api-socket fd={}: not a Unix stream socket", fd);
  if (!listening)
    return fail("--api-socket fd={}: the socket is not listening (call listen first)", fd);
  if (::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) return fail_errno("--api-socket fd={}: fcntl", fd);
  return {};
}

struct ApiServer::Impl {
  UnixSocketServer server;
  std::thread thread;
  std::string created_path;  // unlinked on stop
  bool stopped = false;
};

ApiServer::ApiServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ApiServer::~ApiServer() {
  stop();
}

void ApiServer::stop() {
  if (!impl_ || impl_->stopped) return;
  impl_->stopped = true;
  impl_->server.stop();  // closes the listening socket; waits for workers
  if (impl_->thread.joinable()) impl_->thread.join();
  if (!impl_->created_path.empty()) ::unlink(impl_->created_path.c_str());
}

Result<std::unique_ptr<ApiServer>> ApiServer::start(const ApiSocketSpec& spec, VmmControl& vmm) {
  auto impl = std::make_unique<Impl>();
  Fd fd;
  if (spec.fd >= 0) {
    SKIFF_TRY_VOID(check_listening_unix_fd(spec.fd));
    fd = Fd(spec.fd);
  } else {
    fd = SKIFF_TRY(listen_unix(spec.path));
    impl->created_path = spec.path;
  }

  auto& svr = impl->server;
  // One API thread is the design (DESIGN.md, Threads); two workers let a
  // slow client not block ping. Commands are serialised by the VmmService.
  svr.new_task_queue = [] { return new httplib::ThreadPool(2); };
  svr.set_payload_max_length(kMaxBody);
  svr.set_keep_alive_max_count(1000);
  auto serve = [&vmm](const httplib::Request& req, httplib::Response& res) {
    ApiResponse r = handle(vmm, req.method, req.path, req.body);
    res.status = r.status;
    if (!r.allow.empty()) res.set_header("Allow", r.allow);
    if (!r.body.empty()) res.set_content(r.body, "application/json");
  };
  // Every method reaches handle(), which answers 405 with Allow itself.
  httplib::Server::Handler h = serve;
  svr.Get(".*", h).Options(".*", h);
  // Methods with a body read it through a content reader: httplib 0.11
  // itself waits for the connection to close when a PUT has neither
  // Content-Length nor chunked encoding (what `curl -X PUT` sends), but such a
  // request has an empty body (RFC 9112 §6.3), so it is answered at once.
  httplib::Server::HandlerWithContentReader with_body =
      [serve](const httplib::Request& req, httplib::Response& res,
              const httplib::ContentReader& reader) {
        httplib::Request copy = req;
        if (req.has_header("Content-Length") ||
            req.get_header_value("Transfer-Encoding").find("chunked") != std::string::npos) {
          bool ok = reader([&copy](const char* data, size_t len) {
            copy.body.append(data, len);
            return copy.body.size() <= kMaxBody;
          });
          if (!ok || copy.body.size() > kMaxBody) {
            res.status = 413;
            nlohmann::json body{{"code", 413}, {"message", "request body too large or truncated"}};
            res.set_content(body.dump(), "application/json");
            return;
          }
        }
        serve(copy, res);
      };
  svr.Put(".*", with_body).Post(".*", with_body).Patch(".*", with_body).Delete(".*", with_body);
  // Errors httplib produces itself (400 bad request line, 413 too large)
  // get a JSON body too.
  svr.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    nlohmann::json body{{"code", res.status},
                        {"message", res.status == 413 ? "request body too large"
                                                      : "the HTTP layer refused the request"}};
    res.set_content(body.dump(), "application/json");
  });
  svr.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
        res.status = 500;
        res.set_content(R"({"code":500,"message":"internal error"})", "application/json");
      });

  svr.adopt(fd.release());
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] {
    pthread_setname_np(pthread_self(), "api");
    if (!raw->server.listen_after_bind() && !raw->stopped)
      LOG_ERROR("API server stopped unexpectedly");
  });
  // Wait until the accept loop runs, so stop() right away cannot race it.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!raw->server.is_running()) {
    if (std::chrono::steady_clock::now() > deadline) {
      ApiServer failed(std::move(impl));
      return fail("the API server did not start");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  LOG_INFO("API server listening on {}", spec.fd >= 0 ? fmt::format("fd {}", spec.fd) : spec.path);
  return std::unique_ptr<ApiServer>(new ApiServer(std::move(impl)));
}

}  // namespace skiff::api
