#include "jwt_keys.hpp"

#include <strings.h>

#include <cctype>
#include <cstdio>

#include "cpp_only.hpp"  // must be last: no Postgres in this file

namespace rws {

std::string url_for_log(const std::string &url) {
    std::string out = url.substr(0, url.find_first_of("?#"));
    size_t scheme = out.find("://");
    size_t host = scheme == std::string::npos ? 0 : scheme + 3;
    size_t path = out.find('/', host);
    size_t at = out.rfind('@', path == std::string::npos ? out.size() : path);
    if (at != std::string::npos && at >= host) out.erase(host, at + 1 - host);
    return out;
}

static bool is_loopback_host(const std::string &host) {
    if (host == "localhost" || host == "[::1]") return true;
    // 127.0.0.0/8 as a dotted literal only ("127.evil.example" is a name).
    unsigned a, b, c, d;
    char end;
    return sscanf(host.c_str(), "%3u.%3u.%3u.%3u%c", &a, &b, &c, &d, &end) == 4 && a == 127 && b < 256 && c < 256 &&
           d < 256;
}

static bool plain_http_beyond_loopback(const std::string &url) {
    if (url.size() < 7 || strncasecmp(url.c_str(), "http://", 7) != 0) return false;
    std::string host = url_for_log(url).substr(7);
    host = host.substr(0, host.find('/'));
    size_t port = host.rfind(':');
    if (port != std::string::npos && host.find(']', port) == std::string::npos) host.erase(port);
    for (char &ch : host) ch = static_cast<char>(tolower(static_cast<unsigned char>(ch)));
    return !is_loopback_host(host);
}

void JwtKeys::configure(const std::string &inline_jwks, const std::string &url, Clock::time_point now, KeysLog &log) {
    if (inline_jwks != inline_document_ || (!inline_ && !inline_jwks.empty())) {
        inline_document_ = inline_jwks;
        inline_.reset();
        if (!inline_jwks.empty()) {
            // The setting's check hook refuses what is not a JWKS; this is
            // the same reading, kept safe anyway.
            JwksParse parse = parse_jwks(inline_jwks);
            if (!parse.keys) {
                log.push_back({true, "resumable_ws.jwt_jwks is not used: " + parse.error});
            } else {
                inline_ = parse.keys;
                for (const auto &note : parse.notes) log.push_back({true, "resumable_ws.jwt_jwks: " + note});
                log.push_back({false, "resumable_ws.jwt_jwks keys: " + inline_->describe()});
            }
        }
    }

    if (url != url_) {
        url_ = url;
        generation_++;     // a result for the old URL is not used
        fetched_.reset();  // another URL's keys are not this one's
        failing_ = false;
        logged_keys_.clear();
        logged_notes_.clear();
        if (url_.empty()) {
            fetching_ = false;
            start_fetch_(std::string(), generation_);  // abandons a fetch under way
            return;
        }
        if (plain_http_beyond_loopback(url_))
            log.push_back({true,
                           "resumable_ws.jwt_jwks_url is not https: whoever is on the path can replace "
                           "its keys"});
    }
    // Every reload reads the URL again: the way to drop a revoked key now.
    if (!url_.empty()) start(now);
}

void JwtKeys::start(Clock::time_point now) {
    fetching_ = true;
    generation_++;                           // only this request's result counts
    next_refresh_ = now + kRefreshInterval;  // pushed back by fetched()
    start_fetch_(url_, generation_);
}

JwtKeys::Refetch JwtKeys::refetch_for_unknown_kid(Clock::time_point now) {
    if (url_.empty()) return Refetch::Refused;
    if (fetching_) return Refetch::Waiting;
    if (kid_refetched_ && now - last_kid_refetch_ < kKidRefetchInterval) return Refetch::Refused;
    kid_refetched_ = true;
    last_kid_refetch_ = now;
    start(now);
    return Refetch::Waiting;
}

bool JwtKeys::fetched(JwksFetchResult result, Clock::time_point now, KeysLog &log) {
    // Another request's (replaced, or for a URL no longer configured).
    if (result.generation != generation_ || !fetching_) return false;
    fetching_ = false;
    std::string where = url_for_log(url_);
    if (!result.parse.keys) {
        next_refresh_ = now + kRetryInterval;
        if (!failing_) {
            failing_ = true;
            size_t kept = fetched_ ? fetched_->size() : 0;
            log.push_back({true, "resumable_ws: cannot read the JWKS at " + where + ": " + result.error + "; " +
                                     (fetched_ ? "the " + std::to_string(kept) + " keys read last stay in force"
                                               : std::string("no keys from it yet")) +
                                     " (logged once until it is read again)"});
        }
        return true;
    }
    next_refresh_ = now + kRefreshInterval;
    fetched_ = result.parse.keys;
    if (failing_) {
        failing_ = false;
        log.push_back({false, "resumable_ws: the JWKS at " + where + " is read again"});
    }
    if (result.parse.notes != logged_notes_) {
        logged_notes_ = result.parse.notes;
        for (const auto &note : logged_notes_) log.push_back({true, "resumable_ws: JWKS at " + where + ": " + note});
    }
    std::string keys = fetched_->describe();
    if (keys != logged_keys_) {
        logged_keys_ = keys;
        char timing[96];
        snprintf(timing, sizeof(timing), " (%zu bytes, fetched in %.1f ms, parsed in %.2f ms)", result.bytes,
                 result.fetch_ms, result.parse_ms);
        log.push_back({false, "resumable_ws: keys of the JWKS at " + where + ": " + keys + timing});
    }
    return true;
}

void JwtKeys::tick(Clock::time_point now) {
    if (!url_.empty() && !fetching_ && now >= next_refresh_) start(now);
}

void JwtKeys::fill(TokenRules &rules) const {
    rules.keys[0] = inline_.get();
    rules.keys[1] = fetched_.get();
}

}  // namespace rws
