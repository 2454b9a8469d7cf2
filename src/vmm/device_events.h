// Virtio device lifecycle events on their way from the devices to the
// event monitor. A device only calls its DeviceEventCallback (virtio/
// device.h); the vmm layer names the device and turns the call into a
// VirtioDeviceEvent, and VmmService hands that to the API's event monitor
// as Cloud Hypervisor's
//   {"source":"virtio-device","event":"reset","properties":{"id":"blk0"}}
// (cloud-hypervisor virtio-devices: event!("virtio-device", "activated" |
// "reset", "id", ...)).
#pragma once

#include <functional>
#include <string>

#include "virtio/device.h"

namespace skiff {

struct VirtioDeviceEvent {
  std::string id;     // the device's name in skiff: "blk0", "rng0", "console0"
  std::string event;  // "activated" or "reset"
  std::string error;  // set when the device failed (NEEDS_RESET) rather than being reset
};

using VirtioEventSink = std::function<void(const VirtioDeviceEvent&)>;

// kActivated -> "activated"; kReset (the driver or a machine reset) and
// kNeedsReset (a guest error; `detail` says which) -> "reset".
[[nodiscard]] inline VirtioDeviceEvent make_virtio_device_event(std::string id,
                                                                virtio::DeviceEvent e,
                                                                const std::string& detail) {
  switch (e) {
    case virtio::DeviceEvent::kActivated:
      return {std::move(id), "activated", {}};
    case virtio::DeviceEvent::kReset:
      return {std::move(id), "reset", {}};
    case virtio::DeviceEvent::kNeedsReset:
      return {std::move(id), "reset", detail.empty() ? "device error" : detail};
  }
  return {std::move(id), "reset", {}};
}

// The callback a device named `id` gets; nothing if there is no sink.
[[nodiscard]] inline virtio::DeviceEventCallback forward_device_events(std::string id,
                                                                       VirtioEventSink sink) {
  if (!sink) return {};
  return [id = std::move(id), sink = std::move(sink)](virtio::DeviceEvent e,
                                                      const std::string& detail) {
    sink(make_virtio_device_event(id, e, detail));
  };
}

}  // namespace skiff
