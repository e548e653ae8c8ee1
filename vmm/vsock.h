// VsockDevice: virtio-vsock (device id 19), stream sockets only, with the
// host side of Firecracker's convention:
//
//   host -> guest: a host program connects to the Unix socket `uds_path`,
//     writes "CONNECT <port>\n"; the device sends the guest OP_REQUEST to
//     that port from a fresh host port, and on OP_RESPONSE answers
//     "OK <hostport>\n" on the Unix socket; then bytes flow both ways. A
//     guest that refuses (OP_RST) or does not answer within 2 s gets the
//     Unix socket closed.
//   guest -> host: OP_REQUEST to host port P connects to `uds_path`_P; a
//     refused connect is answered with OP_RST.
//
// The guest serves one stdio connection (port abi::kStdioPort) per run: a
// second host client asking for that port waits (its CONNECT line read,
// nothing sent to the guest) until the VM is reset in place, and is then the
// next run's; other ports are not limited.
//
// Flow control is the virtio credit scheme (virtio 1.2, 5.10.6.3). Data
// from the host is never buffered here: it is read from the Unix socket
// straight into a guest receive buffer, and only as far as the guest's
// advertised credit allows. Data from the guest is written to the Unix
// socket at once; what the socket does not take waits in a per-connection
// buffer of kConnBufSize bytes, which is exactly the credit we advertise.
// A guest that sends beyond its credit, sends malformed packets for a
// connection, or floods the device gets that connection reset (OP_RST),
// never an unbounded allocation: every host-side structure is bounded
// (connections, queued resets, buffers).
//
// Runs on the event-loop thread under the transport's lock; the host
// sockets are watched through a FdWatcher (the event loop's epoll).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "api/boot_info.h"
#include "api/stdio_protocol.h"
#include "api/virtio.h"
#include "base/fd.h"
#include "vmm/log.h"
#include "vmm/virtio_device.h"

namespace ember {

// Plain data, for snapshots. Connections are not state: a snapshot is taken
// with none open (the ready point), and a restore or reset starts with none.
struct VsockState {
  uint64_t guest_cid = 0;
};

// Where host fds are watched: the event loop's epoll (level-triggered).
// events == 0 removes the fd. Readiness comes back as
// VsockDevice::on_fd_event(token, events).
class FdWatcher {
 public:
  virtual ~FdWatcher() = default;
  virtual void watch(int fd, uint32_t events, uint64_t token) = 0;
};

struct VsockLimits {
  uint32_t conn_buf = 256 * 1024;  // guest->host bytes buffered per connection = the credit we advertise
  uint32_t max_conns = 64;         // open connections (both directions)
  uint32_t max_pending_rst = 64;   // resets queued for packets of unknown connections
  uint32_t max_packet = 64 * 1024; // data bytes per packet we send the guest
  uint32_t connect_timeout_ms = 2000;
};

struct VsockStats {
  uint64_t rx_packets = 0, tx_packets = 0;
  uint64_t rx_bytes = 0, tx_bytes = 0;
  uint64_t resets_sent = 0;         // OP_RST we sent
  uint64_t dropped = 0;             // malformed or misaddressed guest packets
  uint64_t credit_violations = 0;   // guest sent beyond its credit
};

class VsockDevice : public VirtioDevice {
 public:
  VsockDevice(uint64_t guest_cid, const Log* log, VsockLimits limits = {});
  ~VsockDevice() override;

  // VirtioDevice
  uint32_t device_id() const override { return abi::kVirtioIdVsock; }
  uint64_t device_features() const override { return 0; }  // stream only (the default)
  uint32_t queue_count() const override { return abi::kVsockQueueCount; }
  void read_config(uint64_t offset, std::span<uint8_t> data) override;
  Result<void> activate(const VirtioContext& ctx, uint64_t driver_features) override;
  bool process_queue(uint32_t q) override;
  void reset() override;  // drops every connection

  // --- host side (event-loop thread, under the transport lock) ---
  // Listens on `uds_path` (a stale socket file there is replaced). Without
  // a listener, host-initiated connections are impossible and guest ones
  // are refused.
  Result<void> listen(const std::string& uds_path, FdWatcher* watcher);
  void on_fd_event(uint64_t token, uint32_t events);

  // Opens the guest's side of a host connection to `port` before any host
  // client asks for it (a restored VM sits at its ready point, listening):
  // the next "CONNECT <port>" from a client is answered at once, which takes
  // a guest round trip out of every invocation. A refusal (OP_RST) just
  // drops it; clients then connect the usual way.
  void preconnect(uint32_t port);

  // End of a run. Processes every packet the guest queued; on each stdio
  // connection (host-initiated, guest port kStdioPort) that is at a frame
  // boundary and has carried no kFrameExit, appends `exit` as one (the
  // guest cannot report a fault itself); writes out what is buffered,
  // waiting up to `deadline_ms` for slow readers; closes every connection.
  void finish(const abi::ExitPayload& exit, int deadline_ms);
  // Drops every connection at once (no packets to the guest); with
  // keep_waiting, host clients the guest never heard of stay (those still to
  // send their CONNECT line, and stdio requests deferred to the next run).
  void close_all(bool keep_waiting = false);

  size_t connection_count() const { return conns_.size(); }
  uint64_t guest_cid() const { return guest_cid_; }
  VsockState save() const { return VsockState{guest_cid_}; }
  const VsockStats& stats() const { return stats_; }

  // Token values for FdWatcher: connections use their id (>= kFirstConnToken).
  static constexpr uint64_t kListenToken = 0;
  static constexpr uint64_t kTimerToken = 1;
  static constexpr uint64_t kFirstConnToken = 2;

 private:
  struct Conn;
  struct PendingRst {
    uint32_t src_port, dst_port;  // as the guest sent them
  };

  bool process_tx();
  void handle_packet(const abi::VsockHeader& h, const DescriptorChain& chain);
  void handle_rw(Conn& c, const abi::VsockHeader& h, const DescriptorChain& chain);
  void guest_connect(const abi::VsockHeader& h);
  // Sends what can be sent to the guest: queued resets, control packets,
  // then data from host sockets. Returns false if the ring broke.
  bool pump_rx();
  bool fill_rx(Conn* c, uint16_t op, uint32_t flags, uint32_t src_port, uint32_t dst_port, bool data,
               bool* progress);
  void accept_clients();
  void read_connect_line(Conn& c);
  void on_timer();
  void arm_timer();
  bool flush_tx_buf(Conn& c);  // false: the socket failed (reset queued)
  void reset_conn(Conn& c, bool tell_guest);
  void destroy_conn(uint64_t id);
  void update_interest(Conn& c);
  void maybe_credit_update(Conn& c);
  uint32_t peer_credit(const Conn& c) const;
  // A stdio connection was established in this run, or one is under way.
  bool stdio_busy(const Conn* except) const;
  void promote_deferred();
  Conn* find(uint32_t local_port, uint32_t peer_port);
  Conn* by_token(uint64_t token);
  uint32_t allocate_port();
  void finish_used(Virtqueue& q);

  uint64_t guest_cid_;
  const Log* log_;
  VsockLimits limits_;
  bool active_ = false;
  VirtioContext ctx_{};
  std::string uds_path_;
  FdWatcher* watcher_ = nullptr;
  Fd listen_fd_;
  Fd timer_fd_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::deque<PendingRst> pending_rst_;
  uint64_t next_token_ = kFirstConnToken;
  uint32_t next_port_ = 1u << 30;
  bool rx_starved_ = false;  // the guest had no receive buffer when we needed one
  bool stdio_used_ = false;  // a stdio connection was established in this run
  size_t rr_ = 0;            // round-robin start for data
  DescriptorChain scratch_;
  VsockStats stats_;
};

}  // namespace ember
