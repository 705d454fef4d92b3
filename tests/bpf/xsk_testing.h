// A minimal AF_XDP socket for tests: one UMEM, a fill ring and an RX ring, copy mode. Enough to
// see which frames an XDP program redirects to a queue, with no library beyond the kernel's
// uapi (the DPDK af_xdp PMD does the same with libxdp in production).
#pragma once

#include <linux/if_xdp.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#ifndef AF_XDP
#define AF_XDP 44
#endif
#ifndef SOL_XDP
#define SOL_XDP 283
#endif

namespace fulcrum::testing {

class XskSocket {
 public:
  static constexpr uint32_t kFrames = 64;
  static constexpr uint32_t kFrameSize = 2048;

  // Binds to (ifindex, queue); error() says why when it could not.
  XskSocket(int ifindex, uint32_t queue) { Init(ifindex, queue); }
  XskSocket(const XskSocket&) = delete;
  XskSocket& operator=(const XskSocket&) = delete;
  ~XskSocket() {
    if (rx_ != nullptr && rx_ != MAP_FAILED) ::munmap(rx_, rx_len_);
    if (fill_ != nullptr && fill_ != MAP_FAILED) ::munmap(fill_, fill_len_);
    if (fd_ >= 0) ::close(fd_);
    if (umem_ != nullptr && umem_ != MAP_FAILED) ::munmap(umem_, umem_len_);
  }

  int fd() const { return fd_; }
  const std::string& error() const { return error_; }

  // The next received frame, waiting up to timeout_ms. Each socket receives at most kFrames
  // frames in its life (frames are not recycled): plenty for a test.
  std::optional<std::vector<uint8_t>> Receive(int timeout_ms) {
    pollfd p{fd_, POLLIN, 0};
    const uint32_t cons = rx_consumer_->load(std::memory_order_relaxed);
    if (rx_producer_->load(std::memory_order_acquire) == cons && ::poll(&p, 1, timeout_ms) <= 0) {
      return std::nullopt;
    }
    if (rx_producer_->load(std::memory_order_acquire) == cons) return std::nullopt;
    const xdp_desc& d = rx_descs_[cons % kFrames];
    const uint8_t* data = static_cast<const uint8_t*>(umem_) + d.addr;
    std::vector<uint8_t> frame(data, data + d.len);
    rx_consumer_->store(cons + 1, std::memory_order_release);
    return frame;
  }

 private:
  void Init(int ifindex, uint32_t queue) {
    fd_ = ::socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return Fail("socket(AF_XDP)");
    umem_len_ = kFrames * kFrameSize;
    umem_ = ::mmap(nullptr, umem_len_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (umem_ == MAP_FAILED) return Fail("mmap umem");
    xdp_umem_reg reg{};
    reg.addr = reinterpret_cast<uintptr_t>(umem_);
    reg.len = umem_len_;
    reg.chunk_size = kFrameSize;
    if (::setsockopt(fd_, SOL_XDP, XDP_UMEM_REG, &reg, sizeof(reg)) != 0) {
      return Fail("XDP_UMEM_REG");
    }
    const uint32_t ring = kFrames;
    if (::setsockopt(fd_, SOL_XDP, XDP_UMEM_FILL_RING, &ring, sizeof(ring)) != 0 ||
        ::setsockopt(fd_, SOL_XDP, XDP_UMEM_COMPLETION_RING, &ring, sizeof(ring)) != 0 ||
        ::setsockopt(fd_, SOL_XDP, XDP_RX_RING, &ring, sizeof(ring)) != 0) {
      return Fail("ring sizes");
    }
    xdp_mmap_offsets off{};
    socklen_t optlen = sizeof(off);
    if (::getsockopt(fd_, SOL_XDP, XDP_MMAP_OFFSETS, &off, &optlen) != 0) {
      return Fail("XDP_MMAP_OFFSETS");
    }
    fill_len_ = off.fr.desc + kFrames * sizeof(uint64_t);
    fill_ = static_cast<uint8_t*>(::mmap(nullptr, fill_len_, PROT_READ | PROT_WRITE, MAP_SHARED,
                                         fd_, XDP_UMEM_PGOFF_FILL_RING));
    rx_len_ = off.rx.desc + kFrames * sizeof(xdp_desc);
    rx_ = static_cast<uint8_t*>(
        ::mmap(nullptr, rx_len_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, XDP_PGOFF_RX_RING));
    if (fill_ == MAP_FAILED || rx_ == MAP_FAILED) return Fail("mmap rings");
    fill_producer_ = reinterpret_cast<std::atomic<uint32_t>*>(fill_ + off.fr.producer);
    fill_descs_ = reinterpret_cast<uint64_t*>(fill_ + off.fr.desc);
    rx_producer_ = reinterpret_cast<std::atomic<uint32_t>*>(rx_ + off.rx.producer);
    rx_consumer_ = reinterpret_cast<std::atomic<uint32_t>*>(rx_ + off.rx.consumer);
    rx_descs_ = reinterpret_cast<xdp_desc*>(rx_ + off.rx.desc);
    // Hand every frame to the kernel for receiving.
    for (uint32_t i = 0; i < kFrames; ++i) fill_descs_[i] = uint64_t{i} * kFrameSize;
    fill_producer_->store(kFrames, std::memory_order_release);
    sockaddr_xdp sa{};
    sa.sxdp_family = AF_XDP;
    sa.sxdp_ifindex = static_cast<uint32_t>(ifindex);
    sa.sxdp_queue_id = queue;
    sa.sxdp_flags = XDP_COPY;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) return Fail("bind");
  }

  void Fail(const char* what) { error_ = std::string(what) + ": " + std::strerror(errno); }

  int fd_ = -1;
  std::string error_;
  void* umem_ = nullptr;
  size_t umem_len_ = 0;
  uint8_t* fill_ = nullptr;
  size_t fill_len_ = 0;
  uint8_t* rx_ = nullptr;
  size_t rx_len_ = 0;
  std::atomic<uint32_t>* fill_producer_ = nullptr;
  uint64_t* fill_descs_ = nullptr;
  std::atomic<uint32_t>* rx_producer_ = nullptr;
  std::atomic<uint32_t>* rx_consumer_ = nullptr;
  xdp_desc* rx_descs_ = nullptr;
};

}  // namespace fulcrum::testing
