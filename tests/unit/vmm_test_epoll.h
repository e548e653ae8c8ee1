// An epoll set standing in for the VMM's event loop (vmm/machine.cc's
// EpollWatcher, without its token tags) where the vsock device runs without
// a VM: its unit tests and its fuzzer.
#pragma once

#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "vmm/vsock.h"

namespace ember::testing {

struct Epoll : FdWatcher {
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  ~Epoll() override { ::close(ep); }
  void watch(int fd, uint32_t events, uint64_t token) override {
    epoll_event e{};
    e.events = events;
    e.data.u64 = token;
    if (events == 0) {
      ::epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
    } else if (::epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e) < 0 && errno == ENOENT) {
      ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
    }
  }
};

}  // namespace ember::testing
