// MetricsServer: cpp-httplib wiring.
#include "controlplane/metrics_server.h"

#include <httplib.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"

namespace fulcrum::controlplane {

absl::Status ParseListenAddress(const std::string& listen, std::string& host, int& port) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon + 1 == listen.size()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("metrics address '%s': want HOST:PORT, e.g. 127.0.0.1:9470", listen));
  }
  host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty() || !absl::SimpleAtoi(listen.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrFormat("metrics address '%s': want HOST:PORT, e.g. 127.0.0.1:9470", listen));
  }
  return absl::OkStatus();
}

MetricsServer::MetricsServer(std::function<std::string()> render) : render_(std::move(render)) {}

MetricsServer::~MetricsServer() { Stop(); }

absl::Status MetricsServer::Start(const std::string& listen) {
  if (absl::Status s = ParseListenAddress(listen, host_, port_); !s.ok()) return s;
  server_ = std::make_unique<httplib::Server>();
  server_->set_read_timeout(5, 0);
  server_->set_write_timeout(5, 0);
  server_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(render_(), "text/plain; version=0.0.4; charset=utf-8");
  });
  server_->Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("Fulcrum control plane: metrics at /metrics\n", "text/plain");
  });
  if (port_ == 0) {
    port_ = server_->bind_to_any_port(host_);
    if (port_ < 0) port_ = 0;
  } else if (!server_->bind_to_port(host_, port_)) {
    port_ = 0;
  }
  if (port_ == 0) {
    return absl::UnavailableError(absl::StrFormat(
        "metrics: cannot listen on %s (address in use, or not an address of this host); pick "
        "another with --metrics, or --metrics off",
        listen));
  }
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  return absl::OkStatus();
}

void MetricsServer::Stop() {
  if (server_ != nullptr) server_->stop();
  if (thread_.joinable()) thread_.join();
  server_.reset();
}

}  // namespace fulcrum::controlplane
