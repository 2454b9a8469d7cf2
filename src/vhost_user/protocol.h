// The vhost-user wire format (specs/vhost-user.rst, "Message Specification"
// and "Front-end message types"). Numbers are in host byte order; every
// struct here is the packed layout the front end (QEMU's VhostUserMsg)
// sends, restated with static_asserts so a layout slip fails the build.
//
// Only the requests skiff-vhost implements are named; anything else is
// answered by closing the connection (the spec allows a back-end to close
// on errors it cannot handle, "Communication").
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace skiff::vhost_user {

enum class Request : uint32_t {
  kGetFeatures = 1,
  kSetFeatures = 2,
  kSetOwner = 3,
  kResetOwner = 4,
  kSetMemTable = 5,
  kSetLogBase = 6,
  kSetLogFd = 7,
  kSetVringNum = 8,
  kSetVringAddr = 9,
  kSetVringBase = 10,
  kGetVringBase = 11,
  kSetVringKick = 12,
  kSetVringCall = 13,
  kSetVringErr = 14,
  kGetProtocolFeatures = 15,
  kSetProtocolFeatures = 16,
  kGetQueueNum = 17,
  kSetVringEnable = 18,
  kGetConfig = 24,
  kSetConfig = 25,
};

// "ReqName(5)" style text for log lines.
[[nodiscard]] std::string_view request_name(uint32_t request);

// Header flags ("Header"): version in bits 0-1, reply bit 2, need_reply bit 3.
inline constexpr uint32_t kVersion = 0x1;
inline constexpr uint32_t kVersionMask = 0x3;
inline constexpr uint32_t kFlagReply = 1u << 2;
inline constexpr uint32_t kFlagNeedReply = 1u << 3;

// The virtio feature bit that says "protocol features are negotiable"
// (the reserved bit 30, "Communication").
inline constexpr unsigned kFeatureProtocolFeatures = 30;
// VHOST_F_LOG_ALL (bit 26): dirty logging for migration; not offered.
inline constexpr unsigned kFeatureLogAll = 26;

// Protocol feature bits ("Protocol features"). Only what is implemented.
inline constexpr unsigned kProtocolMq = 0;
inline constexpr unsigned kProtocolReplyAck = 3;
inline constexpr unsigned kProtocolConfig = 9;
inline constexpr uint64_t kOfferedProtocolFeatures =
    (1ull << kProtocolMq) | (1ull << kProtocolReplyAck) | (1ull << kProtocolConfig);

struct MessageHeader {
  uint32_t request;
  uint32_t flags;
  uint32_t size;  // payload bytes
};
static_assert(sizeof(MessageHeader) == 12);

// "A vring state description".
struct VringState {
  uint32_t index;
  uint32_t num;
};
static_assert(sizeof(VringState) == 8);

// "A vring address description" (struct vhost_vring_addr). The three ring
// addresses are the front end's *user-space* addresses (no IOMMU here).
struct VringAddr {
  uint32_t index;
  uint32_t flags;  // VHOST_VRING_F_LOG (bit 0) only: refused, no LOG_ALL
  uint64_t desc_user_addr;
  uint64_t used_user_addr;
  uint64_t avail_user_addr;
  uint64_t log_guest_addr;
};
static_assert(sizeof(VringAddr) == 40);

// "Memory regions description": u32 count, u32 padding, then regions.
struct MemoryRegionDesc {
  uint64_t guest_phys_addr;
  uint64_t memory_size;
  uint64_t userspace_addr;
  uint64_t mmap_offset;
};
static_assert(sizeof(MemoryRegionDesc) == 32);
inline constexpr size_t kMemTableHeaderBytes = 8;
// VHOST_MEMORY_BASELINE_NREGIONS: the most regions SET_MEM_TABLE carries
// without CONFIGURE_MEM_SLOTS (not offered).
inline constexpr uint32_t kMaxMemRegions = 8;

// "Virtio device config space": offset, size, flags, then `size` bytes.
struct ConfigHeader {
  uint32_t offset;
  uint32_t size;
  uint32_t flags;
};
static_assert(sizeof(ConfigHeader) == 12);
// VHOST_USER_MAX_CONFIG_SIZE in QEMU: no virtio config space is larger.
inline constexpr uint32_t kMaxConfigBytes = 256;

// SET_VRING_KICK/CALL/ERR payload: ring index in bits 0-7, bit 8 = "no fd".
inline constexpr uint64_t kVringIndexMask = 0xff;
inline constexpr uint64_t kVringNoFdFlag = 1ull << 8;

// Payload bounds of the two variable-size requests; anything larger is
// refused before it is read.
inline constexpr uint32_t kMaxMemTableBytes =
    static_cast<uint32_t>(kMemTableHeaderBytes + kMaxMemRegions * sizeof(MemoryRegionDesc));
inline constexpr uint32_t kMaxConfigPayloadBytes =
    static_cast<uint32_t>(sizeof(ConfigHeader) + kMaxConfigBytes);
// File descriptors one message may carry (a memory table: one per region).
inline constexpr size_t kMaxFdsPerMessage = kMaxMemRegions;

}  // namespace skiff::vhost_user
