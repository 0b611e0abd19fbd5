#include "address_filter.hpp"

#include <arpa/inet.h>

#include <cstring>

#include "cpp_only.hpp"  // must be last: no Postgres in this file

namespace rws {

static std::string trim(const std::string &text) {
    size_t begin = text.find_first_not_of(" \t");
    if (begin == std::string::npos) return "";
    size_t end = text.find_last_not_of(" \t");
    return text.substr(begin, end - begin + 1);
}

std::vector<std::string> split_list(const std::string &list) {
    std::vector<std::string> entries;
    size_t start = 0;
    while (start <= list.size()) {
        size_t comma = list.find(',', start);
        if (comma == std::string::npos) comma = list.size();
        std::string entry = trim(list.substr(start, comma - start));
        if (!entry.empty()) entries.push_back(std::move(entry));
        start = comma + 1;
    }
    return entries;
}

// An address as 4 (v4) or 16 (v6) bytes; a v4-mapped v6 address as v4.
static bool parse_address(const std::string &text, bool &v6, std::array<uint8_t, 16> &out) {
    out.fill(0);
    in_addr v4;
    if (text.find(':') == std::string::npos) {
        if (inet_pton(AF_INET, text.c_str(), &v4) != 1) return false;
        memcpy(out.data(), &v4, 4);
        v6 = false;
        return true;
    }
    std::string host = text;
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    size_t zone = host.find('%');  // fe80::1%eth0
    if (zone != std::string::npos) host.resize(zone);
    in6_addr address;
    if (inet_pton(AF_INET6, host.c_str(), &address) != 1) return false;
    static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(address.s6_addr, kMapped, 12) == 0) {
        memcpy(out.data(), address.s6_addr + 12, 4);
        v6 = false;
    } else {
        memcpy(out.data(), address.s6_addr, 16);
        v6 = true;
    }
    return true;
}

bool AddressFilter::parse(const std::string &list, std::string &error) {
    networks_.clear();
    std::vector<Network> parsed;
    for (const std::string &entry : split_list(list)) {
        Network network;
        std::string address = entry;
        int max_prefix;
        size_t slash = entry.find('/');
        std::string prefix_text;
        if (slash != std::string::npos) {
            address = entry.substr(0, slash);
            prefix_text = entry.substr(slash + 1);
        }
        bool mapped_v6_text = address.find(':') != std::string::npos;
        if (!parse_address(address, network.v6, network.address)) {
            error = "\"" + entry + "\" is not an IP address or network";
            return false;
        }
        max_prefix = network.v6 ? 128 : 32;
        if (slash == std::string::npos) {
            network.prefix = max_prefix;
        } else {
            if (prefix_text.empty() || prefix_text.size() > 3 ||
                prefix_text.find_first_not_of("0123456789") != std::string::npos) {
                error = "\"" + entry + "\" has an invalid prefix length";
                return false;
            }
            int prefix = std::stoi(prefix_text);
            // ::ffff:10.0.0.0/104 is 10.0.0.0/8.
            if (mapped_v6_text && !network.v6) prefix -= 96;
            if (prefix < 0 || prefix > max_prefix) {
                error = "\"" + entry + "\" has an invalid prefix length";
                return false;
            }
            network.prefix = prefix;
        }
        parsed.push_back(network);
    }
    networks_ = std::move(parsed);
    return true;
}

bool AddressFilter::matches(const std::string &peer) const {
    bool v6;
    std::array<uint8_t, 16> address;
    if (!parse_address(trim(peer), v6, address)) return false;
    for (const Network &network : networks_) {
        if (network.v6 != v6) continue;
        int bits = network.prefix;
        size_t i = 0;
        for (; bits >= 8; bits -= 8, i++)
            if (address[i] != network.address[i]) break;
        if (bits >= 8) continue;  // a whole byte differed
        if (bits > 0) {
            uint8_t mask = static_cast<uint8_t>(0xff << (8 - bits));
            if ((address[i] & mask) != (network.address[i] & mask)) continue;
        }
        return true;
    }
    return false;
}

}  // namespace rws
