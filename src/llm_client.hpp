// The LLM thread: one thread running libcurl multi for every upstream
// chat-completions request, plus the offline echo provider. It never calls
// Postgres (no palloc, no ereport, no SetLatch): requests come in and updates
// go out through mutex-guarded queues, and it wakes the worker by writing the
// worker's eventfd (DESIGN.md "Where things run").
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace rws {

struct LlmRequest {
    uint64_t id = 0;           // the worker's generation handle
    bool echo = false;         // offline provider: stream echo_answer_pieces()
    std::string echo_message;  // echo: the user message
    std::string url;           // …/chat/completions
    std::string api_key;       // empty: no Authorization header
    std::string body;          // the JSON request
    long connect_timeout_ms = 10000;
    long idle_timeout_ms = 60000;  // longest silence between bytes
    int max_retries = 3;           // before the first token only
    // Text beyond this ends the answer with finish_reason "length" (the
    // worker cuts it to max_event_size anyway; this bounds the thread).
    size_t max_answer_bytes = 1024 * 1024;
};

struct LlmUpdate {
    enum class Kind { Delta, Done, Error } kind;
    uint64_t id = 0;
    std::string text;     // Delta: text; Done: finish_reason; Error: code
    std::string message;  // Error: safe to show a client (no key, no internals)
};

class LlmClient {
  public:
    // wake_fd: an eventfd the worker waits on.
    explicit LlmClient(int wake_fd);
    ~LlmClient();
    LlmClient(const LlmClient &) = delete;
    LlmClient &operator=(const LlmClient &) = delete;

    // Starts the thread (with every signal blocked). Throws on failure.
    void start();
    // Drops every transfer and joins the thread; never waits on upstream.
    void stop();

    void submit(LlmRequest request);
    // Drops a request's transfer; no further update comes for it.
    void abort(uint64_t id);
    // Moves out the updates posted since the last call, oldest first. A
    // request's deltas since the last call arrive already joined.
    void drain(std::vector<LlmUpdate> &out);

    // The thread's state of one request (defined in llm_client.cpp).
    struct Transfer;

  private:
    void run() noexcept;  // the thread
    void serve();         // its loop, until stop()
    void fail_all_transfers() noexcept;
    // Queues an update for the worker. Ends and a request's first text wake
    // it at once; other text waits up to kWakeBatch for company, so that
    // many streams cost the worker a pass per batch, not per token.
    void post(LlmUpdate update);
    void wake_worker_if_due(std::chrono::steady_clock::time_point now);
    void notify_thread();

    int wake_fd_;            // the worker's eventfd
    void *multi_ = nullptr;  // CURLM*, used only by the thread
    // The thread waits in epoll on curl's sockets (O(active) per wake, where
    // curl_multi_poll is O(transfers)) and on its own eventfd, written by
    // submit/abort/stop.
    int epoll_fd_ = -1;
    int thread_wake_fd_ = -1;
    int64_t curl_deadline_ns_ = -1;  // curl's timer on the steady clock; -1: none
    std::thread thread_;
    std::map<uint64_t, std::unique_ptr<Transfer>> transfers_;  // used only by the thread
    bool timers_stale_ = false;                                // the thread's: transfers came, ended or retry
    std::unordered_set<uint64_t> texted_;                      // the thread's: requests that posted text
    std::chrono::steady_clock::time_point wake_due_ =          // the thread's: a deferred wake (max: none)
        std::chrono::steady_clock::time_point::max();

    std::mutex mutex_;  // guards the members below
    std::vector<LlmRequest> submitted_;
    std::vector<uint64_t> aborted_;
    std::vector<LlmUpdate> updates_;
    std::unordered_map<uint64_t, size_t> open_delta_;  // a request's delta in updates_, still growing
    bool worker_woken_ = false;                        // since the last drain
    bool stopping_ = false;
};

}  // namespace rws
