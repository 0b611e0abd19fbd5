// Per-address rate limit of POST /auth/anonymous: a token bucket per client
// address (IPv6 addresses per /64, since one host usually holds a whole /64).
// Pure C++: no Postgres calls, safe from lws callbacks.
#pragma once

#include <chrono>
#include <string>
#include <unordered_map>

namespace rws {

class SignInLimiter {
  public:
    using Clock = std::chrono::steady_clock;

    // Bounds the memory an address-rotating client can make us hold; beyond
    // it, sign-ins from addresses not yet tracked are refused until pruning
    // frees room.
    static constexpr size_t kMaxTrackedAddresses = 100000;

    // Takes one sign-in for this address, with buckets of per_minute sign-ins
    // refilled at per_minute a minute. When refused, retry_after_s says
    // when the next one is allowed.
    bool allow(const std::string &address, int per_minute, Clock::time_point now, int &retry_after_s);

    // Forgets addresses whose bucket has refilled (they are as if new).
    void prune(int per_minute, Clock::time_point now);

    size_t tracked() const { return buckets_.size(); }

    // The key an address is limited by: IPv4 as is, IPv6 its /64 prefix,
    // IPv4-mapped IPv6 as IPv4. Unparsable text is its own key.
    static std::string address_key(const std::string &address);

  private:
    struct Bucket {
        double tokens;
        Clock::time_point refilled;
    };
    static void refill(Bucket &bucket, int per_minute, Clock::time_point now);

    std::unordered_map<std::string, Bucket> buckets_;
};

}  // namespace rws
