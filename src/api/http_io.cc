#include "api/http_io.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <sstream>

#include <boost/beast/core/string.hpp>
#include <boost/beast/http.hpp>

namespace skiff::api {

namespace http = boost::beast::http;
using boost::system::error_code;

namespace {

constexpr uint32_t kMaxHeader = 16 << 10;
// Replies (vm.counters of a large VM) may be larger than requests.
constexpr uint64_t kMaxResponseBody = 16 * kMaxBody;

std::string str(boost::beast::string_view s) {
  return std::string(s.data(), s.size());
}

// Feeds the unconsumed bytes in `buf` to `parser`, removing what it took.
// Returns the parser's verdict: no error (done, or more body to come),
// need_more, or a real error.
template <class Parser>
error_code feed(Parser& parser, std::string& buf) {
  error_code ec;
  while (!buf.empty() && !parser.is_done()) {
    size_t n = parser.put(boost::asio::const_buffer(buf.data(), buf.size()), ec);
    buf.erase(0, n);
    if (ec || n == 0) break;
  }
  return ec;
}

}  // namespace

HttpConnection::Wait HttpConnection::wait_readable(std::chrono::milliseconds timeout) const {
  pollfd fds[2] = {{fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
  for (;;) {
    int n = ::poll(fds, stop_fd_ >= 0 ? 2 : 1, static_cast<int>(timeout.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Wait::kClosed;
    if (n == 0) return Wait::kTimedOut;
    if (stop_fd_ >= 0 && (fds[1].revents & POLLIN)) return Wait::kStopped;
    return Wait::kReadable;  // data, or a hang-up that read() reports as 0
  }
}

Result<size_t> HttpConnection::read_more() {
  char tmp[16 << 10];
  for (;;) {
    ssize_t n = ::read(fd_, tmp, sizeof tmp);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno("reading from the API connection");
    buf_.append(tmp, static_cast<size_t>(n));
    return static_cast<size_t>(n);
  }
}

Result<> HttpConnection::send_all(const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno("writing to the API connection");
    done += static_cast<size_t>(n);
  }
  return {};
}

RequestRead HttpConnection::read_request(std::chrono::milliseconds idle) {
  RequestRead out;
  http::request_parser<http::string_body> parser;
  parser.header_limit(kMaxHeader);
  parser.body_limit(kMaxBody);
  parser.eager(true);
  bool continued = false;
  for (;;) {
    error_code ec = feed(parser, buf_);
    if (ec && ec != http::error::need_more) {
      out.kind = RequestRead::Kind::kBad;
      if (ec == http::error::body_limit) {
        out.status = 413;
        out.message = "request body larger than 1 MiB";
      } else if (ec == http::error::header_limit) {
        out.status = 431;
        out.message = "request header block larger than 16 KiB";
      } else {
        out.status = 400;
        out.message = "malformed HTTP request: " + ec.message();
      }
      return out;
    }
    if (parser.is_done()) break;
    // RFC 9110 §10.1.1: a client that sent "Expect: 100-continue" (curl
    // does for large bodies) waits for this before sending the body.
    if (parser.is_header_done() && !continued) {
      continued = true;
      if (boost::beast::iequals(parser.get()[http::field::expect], "100-continue") &&
          !send_all("HTTP/1.1 100 Continue\r\n\r\n"))
        return out;
    }
    if (wait_readable(idle) != Wait::kReadable) return out;
    auto n = read_more();
    if (!n || *n == 0) return out;  // closed, possibly mid-request: nothing to answer
  }
  auto& req = parser.get();
  out.kind = RequestRead::Kind::kRequest;
  out.request.method = str(req.method_string());
  out.request.target = str(req.target());
  out.request.body = std::move(req.body());
  out.request.keep_alive = req.keep_alive();
  return out;
}

Result<> HttpConnection::write_response(const HttpResponse& response) {
  http::response<http::string_body> res{static_cast<http::status>(response.status), 11};
  res.set(http::field::server, "skiff");
  if (!response.allow.empty()) res.set(http::field::allow, response.allow);
  if (!response.body.empty()) {
    res.set(http::field::content_type, "application/json");
    res.body() = response.body;
  }
  res.keep_alive(response.keep_alive);
  res.prepare_payload();
  std::ostringstream os;
  os << res;
  return send_all(os.str());
}

Result<> HttpConnection::write_request(const std::string& method, const std::string& target,
                                       const std::string& body) {
  http::request<http::string_body> req;
  req.method_string(method);
  req.target(target);
  req.version(11);
  req.set(http::field::host, "localhost");
  if (!body.empty()) req.set(http::field::content_type, "application/json");
  req.body() = body;
  req.prepare_payload();
  std::ostringstream os;
  os << req;
  return send_all(os.str());
}

Result<HttpResponse> HttpConnection::read_response(std::chrono::milliseconds timeout) {
  for (;;) {
    http::response_parser<http::string_body> parser;
    parser.header_limit(kMaxHeader);
    parser.body_limit(kMaxResponseBody);
    parser.eager(true);
    for (;;) {
      error_code ec = feed(parser, buf_);
      if (ec && ec != http::error::need_more) return fail("malformed HTTP reply: {}", ec.message());
      if (parser.is_done()) break;
      Wait w = wait_readable(timeout);
      if (w == Wait::kTimedOut) return fail("no reply within {} s", timeout.count() / 1000);
      if (w != Wait::kReadable) return fail("the connection was closed");
      size_t n = SKIFF_TRY(read_more());
      if (n == 0) {
        // A reply without a length ends where the stream does.
        parser.put_eof(ec);
        if (ec || !parser.is_done()) return fail("the connection closed in the middle of a reply");
        break;
      }
    }
    auto& res = parser.get();
    if (res.result_int() / 100 == 1) continue;  // 100 Continue: the real reply follows
    HttpResponse out;
    out.status = static_cast<int>(res.result_int());
    out.body = std::move(res.body());
    out.allow = str(res[http::field::allow]);
    out.keep_alive = res.keep_alive();
    return out;
  }
}

Result<Fd> connect_unix(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path))
    return fail("socket path '{}' must be 1-{} bytes", path, sizeof(addr.sun_path) - 1);
  path.copy(addr.sun_path, path.size());
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return fail_errno("cannot create a socket");
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
    return fail_errno("cannot connect to '{}'", path);
  return fd;
}

}  // namespace skiff::api
