// Which client addresses may read GET /metrics (resumable_ws.metrics_addresses):
// a comma-separated list of IPv4/IPv6 addresses and CIDR networks. An
// IPv4-mapped IPv6 peer (::ffff:127.0.0.1) is matched as its IPv4 address.
// Pure C++: unit tested.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace rws {

// The entries of a comma-separated setting (listen_addresses,
// metrics_addresses), trimmed of spaces and tabs, empty ones left out.
std::vector<std::string> split_list(const std::string &list);

class AddressFilter {
  public:
    // Returns false (and why in error) if an entry is not an address or
    // network; the filter then holds no entry at all (matches nobody).
    bool parse(const std::string &list, std::string &error);
    bool matches(const std::string &peer) const;
    size_t size() const { return networks_.size(); }

  private:
    struct Network {
        bool v6 = false;
        std::array<uint8_t, 16> address{};  // v4: first 4 bytes
        int prefix = 0;
    };
    std::vector<Network> networks_;
};

}  // namespace rws
