#include "api/api_server.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <list>
#include <thread>

#include <nlohmann/json.hpp>

#include "api/api_handler.h"
#include "api/http_io.h"
#include "base/log.h"

namespace skiff::api {

namespace {

constexpr int kBacklog = 64;
// Connections served at once; one more is answered 503 and closed. Each is
// a client such as libvirt or skiffctl, not a crowd.
constexpr size_t kMaxConnections = 16;
// A keep-alive connection idle this long is closed (HTTP clients reconnect
// when they find a kept connection closed).
constexpr std::chrono::seconds kIdleTimeout{30};
// A client that stops reading its reply cannot hold a thread for longer.
constexpr timeval kSendTimeout{10, 0};

std::string error_body(int status, const std::string& message) {
  return nlohmann::json{{"code", status}, {"message", message}}.dump();
}

// After refusing a request, read and drop what the client is still sending
// (briefly) before closing, so the close does not reset the connection
// before the client has read the refusal (RFC 9112 §9.6).
void linger_close(int fd) {
  ::shutdown(fd, SHUT_WR);
  char sink[16 << 10];
  size_t drained = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (drained < 4 * kMaxBody && std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    ssize_t n = ::read(fd, sink, sizeof sink);
    if (n <= 0) break;
    drained += static_cast<size_t>(n);
  }
}

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
  struct Connection {
    Fd fd;
    std::thread thread;
    std::atomic<bool> done{false};
  };

  explicit Impl(VmmControl& v) : vmm(v) {}
  void accept_loop();
  void serve(Connection& c);
  void reap(bool all);

  VmmControl& vmm;
  Fd listener;
  Fd stop_fd;  // an eventfd written once by stop(), never drained: wakes every wait
  std::thread acceptor;
  std::list<Connection> connections;  // touched by the acceptor thread only
  std::string created_path;           // unlinked on stop
  bool stopped = false;
};

void ApiServer::Impl::serve(Connection& c) {
  pthread_setname_np(pthread_self(), "api-conn");
  HttpConnection conn(c.fd.get(), stop_fd.get());
  for (;;) {
    RequestRead r = conn.read_request(kIdleTimeout);
    if (r.kind == RequestRead::Kind::kClosed) break;
    if (r.kind == RequestRead::Kind::kBad) {
      (void)conn.write_response({r.status, error_body(r.status, r.message), "", false});
      linger_close(c.fd.get());
      break;
    }
    const HttpRequest& req = r.request;
    std::string path = req.target.substr(0, req.target.find('?'));
    HttpResponse res;
    try {
      ApiResponse a = handle(vmm, req.method, path, req.body);
      res = {a.status, std::move(a.body), std::move(a.allow), req.keep_alive};
    } catch (const std::exception& e) {
      LOG_ERROR("API {} {}: {}", req.method, path, e.what());
      res = {500, error_body(500, "internal error"), "", false};
    }
    if (!conn.write_response(res) || !res.keep_alive) break;
  }
  c.fd = Fd();  // the client sees the end now, not when the acceptor reaps this thread
  c.done.store(true, std::memory_order_release);
}

void ApiServer::Impl::reap(bool all) {
  for (auto it = connections.begin(); it != connections.end();) {
    if (all || it->done.load(std::memory_order_acquire)) {
      it->thread.join();
      it = connections.erase(it);
    } else {
      ++it;
    }
  }
}

void ApiServer::Impl::accept_loop() {
  pthread_setname_np(pthread_self(), "api");
  bool logged = false;
  for (;;) {
    pollfd fds[2] = {{listener.get(), POLLIN, 0}, {stop_fd.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) {
      LOG_ERROR("API server: poll: {}", std::strerror(errno));
      break;
    }
    if (fds[1].revents & POLLIN) break;
    if (!(fds[0].revents & POLLIN)) continue;
    Fd fd(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    reap(false);
    if (!fd) {
      // EMFILE and the like: say so once, back off instead of spinning.
      if (!logged) LOG_WARN("API server: accept: {}", std::strerror(errno));
      logged = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &kSendTimeout, sizeof kSendTimeout);
    if (connections.size() >= kMaxConnections) {
      HttpConnection conn(fd.get());
      (void)conn.write_response(
          {503, error_body(503, "too many API connections; close one and retry"), "", false});
      // A client that sends its request after the close would get EPIPE
      // (curl: "Send failure") instead of reading the 503.
      linger_close(fd.get());
      continue;
    }
    Connection& c = connections.emplace_back();
    c.fd = std::move(fd);
    c.thread = std::thread([this, &c] { serve(c); });
  }
  reap(true);  // the stop event ends every connection's wait
}

ApiServer::ApiServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ApiServer::~ApiServer() {
  stop();
}

void ApiServer::stop() {
  if (!impl_ || impl_->stopped) return;
  impl_->stopped = true;
  // Requests being handled finish and are answered; idle connections close.
  uint64_t one = 1;
  if (::write(impl_->stop_fd.get(), &one, sizeof one) != sizeof one)
    LOG_ERROR("API server: cannot signal stop: {}", std::strerror(errno));
  if (impl_->acceptor.joinable()) impl_->acceptor.join();
  impl_->listener = Fd();
  if (!impl_->created_path.empty()) ::unlink(impl_->created_path.c_str());
}

Result<std::unique_ptr<ApiServer>> ApiServer::start(const ApiSocketSpec& spec, VmmControl& vmm) {
  auto impl = std::make_unique<Impl>(vmm);
  if (spec.fd >= 0) {
    SKIFF_TRY_VOID(check_listening_unix_fd(spec.fd));
    impl->listener = Fd(spec.fd);
  } else {
    impl->listener = SKIFF_TRY(listen_unix(spec.path));
    impl->created_path = spec.path;
  }
  impl->stop_fd = Fd(::eventfd(0, EFD_CLOEXEC));
  if (!impl->stop_fd) return fail_errno("API server: eventfd");
  // The socket listens already: clients queue in its backlog until the
  // acceptor runs.
  Impl* raw = impl.get();
  impl->acceptor = std::thread([raw] { raw->accept_loop(); });
  LOG_INFO("API server listening on {}", spec.fd >= 0 ? fmt::format("fd {}", spec.fd) : spec.path);
  return std::unique_ptr<ApiServer>(new ApiServer(std::move(impl)));
}

}  // namespace skiff::api
