// The JWKS fetch thread: reads jwt_jwks_url with libcurl and parses it off
// the Postgres thread. Like the LLM thread it never calls Postgres (no
// palloc, no elog, no SetLatch) and never logs: results go out through a
// mutex-guarded queue, and the thread wakes the worker by writing the
// worker's eventfd. One fetch at a time; a newer request replaces the one
// running. What to fetch when is decided by the worker (jwt_keys.hpp).
#pragma once

#include "jwks.hpp"

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace rws {

struct JwksFetchResult {
    uint64_t generation = 0;  // as given to fetch()
    JwksParse parse;          // parse.keys set: the URL answered a JWKS
    std::string error;        // otherwise: what failed, safe to log (no URL, no body)
    size_t bytes = 0;         // document size
    double fetch_ms = 0;      // the HTTP exchange
    double parse_ms = 0;      // parse_jwks
};

// Bounds of one fetch.
constexpr long kJwksConnectTimeoutMs = 5000;
constexpr long kJwksTotalTimeoutMs = 10000;
constexpr size_t kMaxJwksFetchBytes = 1024 * 1024;

class JwksFetcher {
  public:
    // wake_fd: an eventfd the worker waits on.
    explicit JwksFetcher(int wake_fd);
    ~JwksFetcher();
    JwksFetcher(const JwksFetcher &) = delete;
    JwksFetcher &operator=(const JwksFetcher &) = delete;

    // Starts the thread (with every signal blocked). Throws on failure.
    void start();
    // Abandons any fetch and joins the thread; never waits on the URL.
    void stop();

    // Fetches url (http or https); abandons a fetch under way.
    void fetch(const std::string &url, uint64_t generation);
    // Abandons the fetch under way or asked for; no result comes for it.
    void cancel();
    // Moves out the results posted since the last call, oldest first.
    void drain(std::vector<JwksFetchResult> &out);

  private:
    void run() noexcept;
    bool interrupted(uint64_t epoch);  // stop, cancel or a newer request since epoch
    JwksFetchResult perform(const std::string &url, uint64_t generation, uint64_t epoch);
    void post(JwksFetchResult result);

    int wake_fd_;
    void *multi_ = nullptr;  // CURLM*, used by the thread (curl_multi_wakeup from any)
    std::thread thread_;

    std::mutex mutex_;  // guards the members below
    std::condition_variable wanted_;
    bool stopping_ = false;
    bool requested_ = false;  // url_/generation_ wait to be fetched
    uint64_t epoch_ = 0;      // bumped by fetch() and cancel(): the fetch under way is abandoned
    std::string url_;
    uint64_t generation_ = 0;
    std::vector<JwksFetchResult> results_;
};

}  // namespace rws
