// HTTP/1.1 messages over a connected stream socket (the API's Unix socket),
// for skiff's API server and skiffctl. Boost.Beast parses and serialises
// the messages (header-only: nothing is linked, in particular no TLS
// library, which a VMM that only speaks on a Unix socket has no use for);
// the I/O is plain poll/read/send on the fd, so callers keep control of
// their threads and time-outs.
//
// Limits: request and response bodies up to kMaxBody (1 MiB; the API's
// bodies are VmConfig JSON of a few KiB), header blocks up to 16 KiB.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

#include "base/fd.h"
#include "base/result.h"

namespace skiff::api {

inline constexpr size_t kMaxBody = 1 << 20;

struct HttpRequest {
  std::string method;  // as sent ("PUT", or any token a client invents)
  std::string target;  // "/api/v1/vm.info?x" as sent
  std::string body;
  bool keep_alive = true;
};

struct HttpResponse {
  int status = 200;
  std::string body;   // sent as application/json when not empty
  std::string allow;  // an Allow header (405) when not empty
  bool keep_alive = true;
};

// What reading a request gave.
struct RequestRead {
  enum class Kind {
    kRequest,  // `request` holds a complete request
    kClosed,   // the peer closed, went idle past the time-out, or stop_fd fired
    kBad,      // not HTTP, or over a limit: answer `status` with `message`, then close
  };
  Kind kind = Kind::kClosed;
  HttpRequest request;
  int status = 0;
  std::string message;
};

class HttpConnection {
 public:
  // `fd` stays owned by the caller. A readable `stop_fd` (an eventfd that
  // is never drained) ends any wait; -1 for none.
  explicit HttpConnection(int fd, int stop_fd = -1) : fd_(fd), stop_fd_(stop_fd) {}

  // Server side: the next request on the connection. `idle` bounds the wait
  // for its first byte and for each later piece of it.
  [[nodiscard]] RequestRead read_request(std::chrono::milliseconds idle);
  [[nodiscard]] Result<> write_response(const HttpResponse& response);

  // Client side: one exchange. The reply's keep_alive says whether the
  // connection may carry another.
  [[nodiscard]] Result<> write_request(const std::string& method, const std::string& target,
                                       const std::string& body);
  [[nodiscard]] Result<HttpResponse> read_response(std::chrono::milliseconds timeout);

 private:
  enum class Wait { kReadable, kClosed, kTimedOut, kStopped };
  Wait wait_readable(std::chrono::milliseconds timeout) const;
  // Appends what one read() returns to buf_; 0 at end of stream.
  [[nodiscard]] Result<size_t> read_more();
  [[nodiscard]] Result<> send_all(const std::string& bytes);

  int fd_;
  int stop_fd_;
  std::string buf_;  // received bytes the parser has not consumed yet
};

// Client side: a stream socket connected to the Unix socket at `path`
// (close-on-exec). The error names the path.
[[nodiscard]] Result<Fd> connect_unix(const std::string& path);

}  // namespace skiff::api
