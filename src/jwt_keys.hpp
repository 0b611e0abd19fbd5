// The JWKS keys in force and when to read jwt_jwks_url again: the worker's
// side of the fetch thread (jwks_fetcher.hpp). Keys from the inline jwt_jwks
// and from the URL are both in force. The URL is read at start, on every
// reload (SIGHUP), every kRefreshInterval (sooner after a failure), and when
// a token names an unknown kid, at most once per kKidRefetchInterval, so that
// a flood of made-up kids cannot make us hammer the URL. A failed read keeps
// the keys read last. Pure C++, used on the worker's thread only.
#pragma once

#include "auth.hpp"
#include "jwks.hpp"
#include "jwks_fetcher.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace rws {

using Clock = std::chrono::steady_clock;

constexpr std::chrono::seconds kRefreshInterval{300};
constexpr std::chrono::seconds kRetryInterval{30};  // after a failed read
constexpr std::chrono::seconds kKidRefetchInterval{5};

// A line for the server log, written by the worker (never by the thread).
struct KeysLogLine {
    bool warning = false;
    std::string text;
};
using KeysLog = std::vector<KeysLogLine>;

class JwtKeys {
  public:
    // start_fetch(url, generation): asks the fetch thread for url, replacing
    // any fetch under way; an empty url abandons it.
    using StartFetch = std::function<void(const std::string &url, uint64_t generation)>;
    explicit JwtKeys(StartFetch start_fetch) : start_fetch_(std::move(start_fetch)) {}

    // The settings, at start and after every reload: the inline document is
    // read again, the URL fetched again.
    void configure(const std::string &inline_jwks, const std::string &url, Clock::time_point now, KeysLog &log);

    // A token named a kid no set holds. Waiting: a read of the URL is under
    // way (perhaps started now); verify again when fetched() says so.
    // Refused: no URL, or the last such read is too recent.
    enum class Refetch { Waiting, Refused };
    Refetch refetch_for_unknown_kid(Clock::time_point now);

    // A fetch ended. Returns true when it is the one under way for the
    // current URL (whatever its outcome): tokens waiting on it may be
    // verified again.
    bool fetched(JwksFetchResult result, Clock::time_point now, KeysLog &log);

    // Once a second: starts the periodic read when it is due.
    void tick(Clock::time_point now);

    bool fetching() const { return fetching_; }
    // The rules a token is checked against, with these key sets.
    void fill(TokenRules &rules) const;
    size_t fetched_key_count() const { return fetched_ ? fetched_->size() : 0; }
    size_t inline_key_count() const { return inline_ ? inline_->size() : 0; }

  private:
    void start(Clock::time_point now);

    StartFetch start_fetch_;
    std::string inline_document_;
    KeySetPtr inline_;
    std::string url_;
    uint64_t generation_ = 0;  // of the latest request to the fetch thread
    KeySetPtr fetched_;
    bool fetching_ = false;
    Clock::time_point next_refresh_;
    Clock::time_point last_kid_refetch_;
    bool kid_refetched_ = false;  // last_kid_refetch_ is set
    bool failing_ = false;        // in a streak of failed reads (logged once)
    std::string logged_keys_;     // the key list last logged
    std::vector<std::string> logged_notes_;
};

// The URL without its query, fragment or user info (for the log: those may
// hold credentials).
std::string url_for_log(const std::string &url);

}  // namespace rws
