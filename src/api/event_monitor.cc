#include "api/event_monitor.h"

#include <fcntl.h>

#include <nlohmann/json.hpp>

#include "base/log.h"

namespace skiff::api {

Result<std::unique_ptr<EventMonitor>> EventMonitor::open(const std::string& path, int fd) {
  if (fd >= 0) {
    if (::fcntl(fd, F_GETFD) < 0)
      return fail_errno("--event-monitor fd={}: not an open file descriptor", fd);
    (void)::fcntl(fd, F_SETFD, FD_CLOEXEC);
    return std::unique_ptr<EventMonitor>(new EventMonitor(Fd(fd)));
  }
  Fd f = SKIFF_TRY(open_file(path, O_WRONLY | O_CREAT | O_APPEND, 0644));
  return std::unique_ptr<EventMonitor>(new EventMonitor(std::move(f)));
}

std::string EventMonitor::format(const VmmEvent& event, std::chrono::nanoseconds since_start) {
  using nlohmann::json;
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(since_start);
  json props = nullptr;
  if (!event.properties.empty()) {
    props = json::object();
    for (const auto& [k, v] : event.properties) props[k] = v;
  }
  json j{{"timestamp", {{"secs", secs.count()}, {"nanos", (since_start - secs).count()}}},
         {"source", event.source},
         {"event", event.event},
         {"properties", props}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

void EventMonitor::write(const VmmEvent& event) {
  std::lock_guard lock(mu_);
  if (failed_) return;
  std::string line = format(event, std::chrono::steady_clock::now() - start_) + "\n";
  auto r =
      write_all(fd_.get(), std::span(reinterpret_cast<const uint8_t*>(line.data()), line.size()));
  if (!r) {
    failed_ = true;
    LOG_WARN("event monitor: {}; no more events will be written", r.error().what());
  }
}

}  // namespace skiff::api
