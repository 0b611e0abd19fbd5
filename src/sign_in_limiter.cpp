#include "sign_in_limiter.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpp_only.hpp"  // must be last: no Postgres in this file

namespace rws {

std::string SignInLimiter::address_key(const std::string &address) {
    unsigned char bytes[16];
    if (inet_pton(AF_INET, address.c_str(), bytes) == 1) return address;
    if (inet_pton(AF_INET6, address.c_str(), bytes) != 1) return address;
    static const unsigned char kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    char text[INET6_ADDRSTRLEN];
    if (memcmp(bytes, kMappedPrefix, sizeof(kMappedPrefix)) == 0) {
        inet_ntop(AF_INET, bytes + 12, text, sizeof(text));
        return text;
    }
    memset(bytes + 8, 0, 8);
    inet_ntop(AF_INET6, bytes, text, sizeof(text));
    return std::string(text) + "/64";
}

void SignInLimiter::refill(Bucket &bucket, int per_minute, Clock::time_point now) {
    double elapsed = std::max(0.0, std::chrono::duration<double>(now - bucket.refilled).count());
    bucket.tokens = std::min<double>(per_minute, bucket.tokens + elapsed * per_minute / 60.0);
    bucket.refilled = now;
}

bool SignInLimiter::allow(const std::string &address, int per_minute, Clock::time_point now, int &retry_after_s) {
    std::string key = address_key(address);
    auto it = buckets_.find(key);
    if (it == buckets_.end()) {
        if (buckets_.size() >= kMaxTrackedAddresses) {
            retry_after_s = 60;
            return false;
        }
        it = buckets_.emplace(key, Bucket{static_cast<double>(per_minute), now}).first;
    }
    Bucket &bucket = it->second;
    refill(bucket, per_minute, now);
    if (bucket.tokens >= 1.0) {
        bucket.tokens -= 1.0;
        return true;
    }
    double wait = (1.0 - bucket.tokens) * 60.0 / per_minute;
    retry_after_s = std::max(1, static_cast<int>(std::ceil(wait)));
    return false;
}

void SignInLimiter::prune(int per_minute, Clock::time_point now) {
    for (auto it = buckets_.begin(); it != buckets_.end();) {
        refill(it->second, per_minute, now);
        if (it->second.tokens >= per_minute)
            it = buckets_.erase(it);
        else
            ++it;
    }
}

}  // namespace rws
