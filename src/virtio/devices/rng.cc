#include "virtio/devices/rng.h"

#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <cerrno>

namespace skiff::virtio {

Result<std::unique_ptr<VirtioRng>> VirtioRng::create(const std::optional<std::string>& source) {
  Fd fd;
  if (source) fd = SKIFF_TRY(open_file(*source, O_RDONLY));
  return std::unique_ptr<VirtioRng>(new VirtioRng(std::move(fd)));
}

VirtioRng::VirtioRng(Fd source)
    : VirtioDevice(kVirtioIdRng, "rng", 0, 1, kQueueSize), source_(std::move(source)) {}

size_t VirtioRng::fill(std::span<uint8_t> out) {
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = source_.valid() ? ::read(source_.get(), out.data() + done, out.size() - done)
                                : ::getrandom(out.data() + done, out.size() - done, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // error or end of a source file: give what we have
    done += static_cast<size_t>(n);
  }
  return done;
}

Result<> VirtioRng::handle_queue(uint16_t index, Queue& queue) {
  bool used_any = false;
  for (;;) {
    bool got = SKIFF_TRY(queue.pop_into(chain_));
    if (!got) break;
    if (chain_.readable_bytes() != 0)
      return fail("rng request carries {} driver-readable bytes (virtio 1.2 §5.4.6.1)",
                  chain_.readable_bytes());
    uint64_t written = 0;
    for (auto buf : chain_.writable()) {
      if (written >= kMaxFillBytes) break;
      auto part =
          buf.first(static_cast<size_t>(std::min<uint64_t>(buf.size(), kMaxFillBytes - written)));
      size_t n = fill(part);
      written += n;
      if (n < part.size()) break;
    }
    SKIFF_TRY_VOID(queue.add_used(chain_.head(), static_cast<uint32_t>(written)));
    used_any = true;
  }
  if (used_any) signal_used(index);
  return {};
}

}  // namespace skiff::virtio
