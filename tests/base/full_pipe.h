// A non-blocking pipe whose write end is full: what tests of an EPOLLOUT
// watch start from (a full tap's tx queue behaves alike). drain() makes
// room, which is the edge the watch must see.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "base/fd.h"

namespace skiff::test_support {

struct FullPipe {
  Fd rd, wr;
  // False if the pipe could not be made or filled.
  bool fill() {
    int p[2];
    if (::pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) return false;
    rd.reset(p[0]);
    wr.reset(p[1]);
    char block[4096] = {};
    while (::write(wr.get(), block, sizeof block) > 0) {
    }
    return errno == EAGAIN;
  }
  void drain() {
    char block[4096];
    while (::read(rd.get(), block, sizeof block) > 0) {
    }
  }
};

}  // namespace skiff::test_support
