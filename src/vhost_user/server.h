// VhostUserServer: the listening Unix socket of a vhost-user back end
// (specs/vhost-user.rst: the back end may be the server side). It serves
// one front end at a time; when the front end disconnects (or breaks the
// protocol), the back end is reset and the next connection is accepted,
// so a restarted QEMU reconnects to the same running process.
#pragma once

#include <functional>
#include <string>

#include "base/fd.h"
#include "base/result.h"
#include "vhost_user/backend.h"

namespace skiff::vhost_user {

class VhostUserServer {
 public:
  // Binds and listens on `path`. A stale socket file left by a previous
  // run is replaced; any other existing file is an error.
  [[nodiscard]] static Result<VhostUserServer> listen(const std::string& path);
  ~VhostUserServer();
  VhostUserServer(VhostUserServer&&) = default;
  VhostUserServer& operator=(VhostUserServer&&) = default;

  // Accepts and serves connections until `stop_fd` becomes readable.
  // `on_disconnect` runs after each connection ends (before the reset).
  [[nodiscard]] Result<> run(VhostUserBackend& backend, int stop_fd,
                             const std::function<void()>& on_disconnect = {});

  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  VhostUserServer(Fd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}
  Fd fd_;
  std::string path_;
};

}  // namespace skiff::vhost_user
