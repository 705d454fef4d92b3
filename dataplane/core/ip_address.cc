// IpAddress text conversion.
#include "dataplane/core/ip_address.h"

#include <arpa/inet.h>

#include <string>

#include "absl/strings/str_format.h"

namespace fulcrum {

absl::StatusOr<IpAddress> IpAddress::Parse(std::string_view text) {
  const std::string s(text);  // inet_pton needs a terminated string
  IpAddress ip;
  if (inet_pton(AF_INET, s.c_str(), ip.bytes.data()) == 1) return ip;
  if (inet_pton(AF_INET6, s.c_str(), ip.bytes.data()) == 1) {
    ip.v6 = true;
    return ip;
  }
  return absl::InvalidArgumentError(absl::StrFormat("'%s' is not an IPv4 or IPv6 address", text));
}

std::string IpAddress::ToString() const {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(v6 ? AF_INET6 : AF_INET, bytes.data(), buf, sizeof(buf));
  return buf;
}

}  // namespace fulcrum
