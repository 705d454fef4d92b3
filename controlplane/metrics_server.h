// MetricsServer: serves GET /metrics (Prometheus text format) with cpp-httplib on its own
// threads. Listens on 127.0.0.1 unless told otherwise: nothing of Fulcrum listens on a public
// address by default.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"

namespace httplib {
class Server;
}

namespace fulcrum::controlplane {

class MetricsServer {
 public:
  // `render` runs on an HTTP thread for every scrape.
  explicit MetricsServer(std::function<std::string()> render);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // "HOST:PORT"; port 0 picks a free one (port() says which).
  absl::Status Start(const std::string& listen);
  void Stop();
  int port() const { return port_; }
  const std::string& host() const { return host_; }

 private:
  std::function<std::string()> render_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::string host_;
  int port_ = 0;
};

// Splits "HOST:PORT" / "[V6]:PORT"; InvalidArgument otherwise.
absl::Status ParseListenAddress(const std::string& listen, std::string& host, int& port);

}  // namespace fulcrum::controlplane
