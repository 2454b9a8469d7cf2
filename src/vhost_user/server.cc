#include "vhost_user/server.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/log.h"

namespace skiff::vhost_user {

Result<VhostUserServer> VhostUserServer::listen(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path)
    return fail("socket path '{}' is empty or longer than {} bytes", path,
                sizeof addr.sun_path - 1);
  std::memcpy(addr.sun_path, path.data(), path.size());

  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return fail("{} exists and is not a socket; refusing to replace it", path);
    if (::unlink(path.c_str()) != 0) return fail_errno("removing the stale socket {}", path);
  }
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return fail_errno("creating a Unix socket");
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return fail_errno("binding {}", path);
  if (::listen(fd.get(), 1) != 0) return fail_errno("listening on {}", path);
  return VhostUserServer(std::move(fd), path);
}

VhostUserServer::~VhostUserServer() {
  if (fd_) ::unlink(path_.c_str());
}

Result<> VhostUserServer::run(VhostUserBackend& backend, int stop_fd,
                              const std::function<void()>& on_disconnect) {
  for (;;) {
    pollfd fds[2] = {{fd_.get(), POLLIN, 0}, {stop_fd, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return fail_errno("poll on {}", path_);
    }
    if (fds[1].revents & POLLIN) return {};
    Fd conn(::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return fail_errno("accept on {}", path_);
    }
    // Between messages the back end waits in poll (and notices stop_fd);
    // inside one message a front end that stalls would block it for good.
    // Messages are sent whole, so a few seconds is plenty.
    timeval tv{5, 0};
    if (::setsockopt(conn.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
        ::setsockopt(conn.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0)
      return fail_errno("setting timeouts on a vhost-user connection");
    LOG_INFO("vhost-user: front end connected on {}", path_);
    auto r = backend.serve(conn.get(), stop_fd);
    // One line per connection end; a protocol violation says why.
    if (r)
      LOG_INFO("vhost-user: front end disconnected from {}", path_);
    else
      LOG_WARN("vhost-user: closing the connection on {}: {}", path_, r.error().what());
    conn.reset();
    if (on_disconnect) on_disconnect();
    backend.reset();
  }
}

}  // namespace skiff::vhost_user
