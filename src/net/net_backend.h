// NetBackend: what a virtio-net front end needs from the host side of a
// network interface (DESIGN.md "Front ends depend on backend interfaces"):
// per queue pair, receive and send whole Ethernet frames, each prefixed by
// a kVnetHeaderBytes virtio-net header (virtio 1.2 §5.1.6, struct
// virtio_net_hdr with num_buffers: the VERSION_1 layout), and choose which
// offloads may appear in received headers. The tap (net/tap.h) implements
// it; tests implement it over in-memory queues.
//
// Threads: receive(p) and send(p) for different pairs run concurrently, and
// receive(p) concurrently with send(p) (skiff-vhost serves every ring on its
// own thread). set_offloads / set_queue_pair_enabled come from the control
// queue's thread. Implementations must be safe under that.
#pragma once

#include <sys/uio.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <span>

#include "base/result.h"

namespace skiff::net {

// Size of the header in front of every frame: struct virtio_net_hdr (10
// bytes) + le16 num_buffers (virtio 1.2 §5.1.6: with VERSION_1 the header
// always has num_buffers). Little endian.
inline constexpr size_t kVnetHeaderBytes = 12;

// Largest frame (header excluded) either direction carries: a 64 KiB GSO
// super-frame plus an Ethernet + VLAN header.
inline constexpr size_t kMaxFrameBytes = 65535 + 14 + 4;

// Most iovec entries one receive()/send() takes (the kernel's UIO_MAXIOV).
inline constexpr size_t kMaxIov = 1024;

// A receive buffer that no frame fills: one that does was cut short.
inline constexpr size_t kRecvSpillBytes = kVnetHeaderBytes + kMaxFrameBytes + 1;

// Most frames one send_batch() takes.
inline constexpr size_t kMaxSendBatch = 64;

// Most frames one receive_batch() takes.
inline constexpr size_t kMaxRecvBatch = 32;

// Offloads a backend may deliver in received frames (what the guest accepts:
// VIRTIO_NET_F_GUEST_*). Same values as the kernel's TUN_F_* flags.
enum NetOffload : unsigned {
  kOffloadCsum = 0x01,    // partial checksums (VIRTIO_NET_HDR_F_NEEDS_CSUM)
  kOffloadTso4 = 0x02,    // TCPv4 segmentation (GSO_TCPV4)
  kOffloadTso6 = 0x04,    // TCPv6 segmentation (GSO_TCPV6)
  kOffloadTsoEcn = 0x08,  // TSO with the ECN bit (GSO_ECN)
  kOffloadUfo = 0x10,     // UDP fragmentation offload (GSO_UDP)
};

class NetBackend {
 public:
  virtual ~NetBackend() = default;

  [[nodiscard]] virtual uint16_t num_queue_pairs() const = 0;

  // NetOffload bits this backend can be asked to deliver (set_offloads), and
  // can accept in sent frames' headers.
  [[nodiscard]] virtual unsigned supported_offloads() const = 0;

  // An fd that becomes readable (edge: watch with EPOLLET) when `pair` has a
  // frame to receive; -1 if the backend has none (tests that poll).
  [[nodiscard]] virtual int rx_event_fd(uint16_t pair) const = 0;

  // An fd that becomes writable (edge: watch with EPOLLOUT | EPOLLET) when
  // `pair`, after refusing a frame because it was full (send() false,
  // send_batch() short), can take frames again; -1 if the backend has none
  // (one that is never full, or tests that poll).
  [[nodiscard]] virtual int tx_event_fd(uint16_t pair) const = 0;

  // Receives one frame of `pair` (header first) into `iov` (at most kMaxIov
  // entries, at least kVnetHeaderBytes in all). Returns the frame's length,
  // header included, or 0 if no frame is waiting. A frame longer than the
  // iov is cut short and the rest is lost (a tap cannot say how long a
  // frame is before it is read); the length returned then fills the iov
  // (or, as some kernels' tap reports, exceeds it): callers that must not
  // lose data end the iov with a spill buffer longer than any frame
  // (kRecvSpillBytes), and drop what fills it. Never blocks.
  [[nodiscard]] virtual Result<size_t> receive(uint16_t pair, std::span<const iovec> iov) = 0;

  // Receives up to bufs.size() (<= kMaxRecvBatch) frames of `pair`, frame i
  // into bufs[i] (one buffer each; a longer frame is cut short, as in
  // receive()). sizes[i]: the frame's length, header included (filling or
  // exceeding bufs[i] if it was cut short, as in receive()); 0 where no
  // frame came; -errno for a frame lost to a host error. Frames fill the
  // buffers in the order the backend queued them, but an empty buffer may
  // come before a full one (a frame arrived meanwhile). Returns how many
  // buffers it tried, a prefix of bufs; the backend was empty when the
  // last one tried got 0. Never blocks. The default receives one by one,
  // stopping at the first 0; the tap hands the whole batch to the kernel.
  [[nodiscard]] virtual Result<size_t> receive_batch(uint16_t pair,
                                                     std::span<const std::span<uint8_t>> bufs,
                                                     std::span<int> sizes) {
    for (size_t i = 0; i < bufs.size(); ++i) {
      const iovec one{bufs[i].data(), bufs[i].size()};
      auto got = receive(pair, std::span(&one, 1));
      if (!got) {
        sizes[i] = -(got.error().errnum != 0 ? got.error().errnum : EIO);
        continue;
      }
      sizes[i] = static_cast<int>(*got);
      if (*got == 0) return i + 1;
    }
    return bufs.size();
  }

  // Sends one frame (header first, at most kMaxIov entries) on `pair`. False: the backend cannot
  // take it now (try again later); nothing was sent. An Error means the frame was refused or lost
  // (the caller counts it and moves on). Never blocks.
  [[nodiscard]] virtual Result<bool> send(uint16_t pair, std::span<const iovec> iov) = 0;

  // Sends frames[0..n) on `pair` in order (n <= kMaxSendBatch), each as
  // send() would, stopping where the backend is full. Returns how many it
  // took; for each of those, refused[i] is 0 (sent) or an errno (refused or
  // lost: counted and moved past, like an Error from send()). The rest
  // stay with the caller for the next notification. The default sends them
  // one by one; the tap hands the whole batch to the kernel at once.
  [[nodiscard]] virtual Result<size_t> send_batch(uint16_t pair,
                                                  std::span<const std::span<const iovec>> frames,
                                                  std::span<int> refused) {
    size_t i = 0;
    for (; i < frames.size(); ++i) {
      auto sent = send(pair, frames[i]);
      if (sent && !*sent) break;
      refused[i] = sent ? 0 : (sent.error().errnum != 0 ? sent.error().errnum : EIO);
    }
    return i;
  }

  // Which NetOffload bits received frames may use from now on (a subset of
  // supported_offloads()); 0 = fully checksummed, unsegmented frames only.
  [[nodiscard]] virtual Result<> set_offloads(unsigned offloads) = 0;

  // Whether the host may steer received frames to `pair` (virtio-net's
  // active queue pairs, §5.1.6.5.5). Frames never queue on a disabled pair.
  [[nodiscard]] virtual Result<> set_queue_pair_enabled(uint16_t pair, bool enabled) = 0;
};

}  // namespace skiff::net
