// ApiServer: serves the management API (api_handler.h) over HTTP/1.1 on a
// Unix stream socket, on threads of its own (`api`, plus cpp-httplib's
// worker pool of two).
//
// The listening socket is always made (or inherited) here and handed to
// cpp-httplib: Debian's cpp-httplib 0.11 can bind only TCP addresses itself
// (set_address_family(AF_UNIX) + listen(path) fails in that version), and
// `--api-socket fd=N` needs an already-listening socket served as it is.
// httplib::Server keeps its listening socket in a protected member that
// listen_after_bind() serves; a subclass sets it, which is the whole adapter.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "base/fd.h"
#include "base/result.h"
#include "vmm/vmm_service.h"

namespace skiff::api {

struct ApiSocketSpec {
  std::string path;  // create and listen on this path (a stale socket file is replaced)
  int fd = -1;       // or serve this inherited, already-listening AF_UNIX stream socket
};

class ApiServer {
 public:
  // Checks/creates the socket and starts serving. Errors name the socket.
  [[nodiscard]] static Result<std::unique_ptr<ApiServer>> start(const ApiSocketSpec& spec,
                                                                VmmControl& vmm);
  // Stops accepting, finishes in-flight requests, removes a socket file it created.
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  void stop();

 private:
  struct Impl;
  explicit ApiServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Creates a listening AF_UNIX stream socket at `path` (close-on-exec).
[[nodiscard]] Result<Fd> listen_unix(const std::string& path);

// Checks that `fd` is a listening AF_UNIX stream socket and sets close-on-exec.
[[nodiscard]] Result<> check_listening_unix_fd(int fd);

}  // namespace skiff::api
