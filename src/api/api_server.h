// ApiServer: serves the management API (api_handler.h) over HTTP/1.1 on a
// Unix stream socket. Threads: `api` accepts; each client connection is
// served on an `api-conn` thread of its own (at most 16 at once), so a slow
// or idle client never holds up another; commands are serialised by the
// VmmService. HTTP parsing and serialisation: http_io.h (Boost.Beast).
//
// The listening socket is made here (`--api-socket path=`) or inherited
// already listening (`--api-socket fd=N`, as libvirt passes it) and served
// as it is. Refusals of the HTTP layer itself (malformed request 400,
// header block over 16 KiB 431, body over 1 MiB 413, too many connections
// 503) carry the same JSON error body as the API's own.
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
