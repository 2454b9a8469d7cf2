// BasicFakeDriver's Guest interface (fake_driver.h: host/get/put) over a
// real GuestMemory, through its checked accessors, for test guests whose RAM
// is not FakeGuest's vector: GuestRam zones (tests/memory), a vhost-user
// MemoryTable (tests/vhost_user). `Guest` derives from it and provides
// `const GuestMemory& guest_memory()` and kRamBase.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <span>

#include "memory/guest_memory.h"

namespace skiff::virtio::testing {

template <typename Guest>
struct GuestMemoryAccess {
  std::span<uint8_t> host(uint64_t gpa, size_t len) { return *mem().slice(gpa, len); }
  template <typename T>
  T get(uint64_t gpa) {
    return *mem().template read_obj<T>(gpa);
  }
  template <typename T>
  void put(uint64_t gpa, const T& v) {
    EXPECT_TRUE(mem().write_obj(gpa, v));
  }

 private:
  const GuestMemory& mem() { return static_cast<Guest&>(*this).guest_memory(); }
};

}  // namespace skiff::virtio::testing
