#include "virtio/devices/net_ctrl_queue.h"

#include "base/log.h"

namespace skiff::virtio {

Result<bool> serve_net_ctrl_queue(Queue& queue, DescriptorChain& chain, uint64_t features,
                                  uint16_t max_pairs, RxFilter& filter, NetCtrlTarget& target,
                                  std::string_view log_name) {
  bool used = false;
  for (;;) {
    if (!SKIFF_TRY(queue.pop_into(chain))) break;
    const DescriptorChain& c = chain;
    // §5.1.6.5: class and command readable, then a writable ack byte.
    if (c.readable_bytes() < 2)
      return fail("control request {} has {} readable bytes, want the 2-byte class and command",
                  c.head(), c.readable_bytes());
    if (c.writable_bytes() < 1)
      return fail("control request {} has no writable byte for the ack", c.head());
    CtrlEffects effects;
    uint8_t ack;
    {
      auto lock = target.lock_rx_filter();
      RxFilter next = filter;
      ack = execute_ctrl_command(c.readable(), features, max_pairs, next, effects);
      if (ack == kNetCtrlOk && effects.queue_pairs) {
        if (auto r = target.set_ctrl_queue_pairs(*effects.queue_pairs); !r) {
          LOG_WARN("{}: setting {} queue pairs: {}", log_name, *effects.queue_pairs,
                   r.error().what());
          ack = kNetCtrlErr;
        }
      }
      if (ack == kNetCtrlOk && effects.guest_offloads) {
        if (auto r = target.set_ctrl_guest_offloads(*effects.guest_offloads); !r) {
          LOG_WARN("{}: {}", log_name, r.error().what());
          ack = kNetCtrlErr;
        }
      }
      if (ack == kNetCtrlOk) {
        filter = next;
        target.rx_filter_changed();
      }
    }
    if (ack == kNetCtrlOk && effects.mac) target.set_ctrl_mac(*effects.mac);
    (void)copy_to_buffers(c.writable(), 0, std::span(&ack, 1));
    SKIFF_TRY_VOID(queue.add_used(c.head(), 1));
    used = true;
  }
  return used;
}

}  // namespace skiff::virtio
