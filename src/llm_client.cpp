#include "llm_client.hpp"

#include "llm_stream.hpp"
#include "metrics.hpp"
#include "signal_free_thread.hpp"

#include <curl/curl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <stdexcept>

#include "cpp_only.hpp"  // must be last: no Postgres in this file

namespace rws {

using LlmClock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Kept of an error response, for the log.
constexpr size_t kMaxErrorBody = 16 * 1024;
// Pace of the echo provider: one word per interval, like a model would.
constexpr milliseconds kEchoPieceInterval{30};
// Retry backoff before the first token: 250 ms, 500 ms, 1 s, … up to 4 s;
// an upstream Retry-After is honoured up to 10 s.
constexpr milliseconds kFirstBackoff{250};
constexpr milliseconds kMaxBackoff{4000};
constexpr long kMaxRetryAfterSeconds = 10;

struct LlmClient::Transfer {
    LlmClient *client = nullptr;
    LlmRequest request;
    bool finished = false;  // its one terminal update is posted

    // HTTP
    CURL *easy = nullptr;
    curl_slist *headers = nullptr;
    int attempt = 0;
    bool waiting_retry = false;
    LlmClock::time_point retry_at;
    LlmClock::time_point last_activity;
    long status = 0;
    SseParser sse;
    std::vector<std::string> events;  // scratch for the parser
    std::string error_body;
    bool got_token = false;
    bool internal_failure = false;  // a callback caught an exception
    size_t answer_bytes = 0;
    int malformed = 0;
    size_t events_seen = 0;

    // echo
    std::vector<std::string> pieces;
    size_t next_piece = 0;
    LlmClock::time_point next_due;

    void emit(LlmUpdate update) { client->post(std::move(update)); }

    void finish(LlmUpdate::Kind kind, std::string text, std::string message = std::string()) {
        if (finished) return;
        finished = true;
        client->timers_stale_ = true;  // to be erased by the next scan
        LlmUpdate update{kind, request.id, std::move(text), std::move(message)};
        client->post(std::move(update));
    }
};

static void curl_init_once() {
    static bool done = false;
    if (done) return;
    // Not thread-safe itself: called on the worker's own thread before the
    // LLM thread exists.
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) throw std::runtime_error("curl_global_init failed");
    done = true;
}

// curl's callbacks are called from C: nothing may unwind through them. Each
// catches everything and reports a failure curl understands instead.

// curl tells which sockets to watch for what; they go into the epoll set.
static int on_socket(CURL *, curl_socket_t fd, int what, void *user, void *) noexcept {
    int epoll_fd = *static_cast<int *>(user);
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, nullptr);
        return 0;
    }
    epoll_event event{};
    event.events = (what & CURL_POLL_IN ? EPOLLIN : 0u) | (what & CURL_POLL_OUT ? EPOLLOUT : 0u);
    event.data.fd = fd;
    if (epoll_ctl(epoll_fd, EPOLL_CTL_MOD, fd, &event) != 0 && errno == ENOENT)
        epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event);
    return 0;
}

// curl's timer, relative to now, kept as a deadline.
static int on_timer(CURLM *, long timeout_ms, void *user) noexcept {
    auto *deadline_ns = static_cast<int64_t *>(user);
    if (timeout_ms < 0) {
        *deadline_ns = -1;
    } else {
        auto deadline = LlmClock::now() + milliseconds(timeout_ms);
        *deadline_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline.time_since_epoch()).count();
    }
    return 0;
}

static LlmClock::time_point from_ns(int64_t ns) {
    return LlmClock::time_point(std::chrono::nanoseconds(ns));
}

LlmClient::LlmClient(int wake_fd) : wake_fd_(wake_fd) {
    curl_init_once();
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    thread_wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    multi_ = curl_multi_init();
    if (epoll_fd_ < 0 || thread_wake_fd_ < 0 || multi_ == nullptr) {
        if (epoll_fd_ >= 0) close(epoll_fd_);
        if (thread_wake_fd_ >= 0) close(thread_wake_fd_);
        if (multi_ != nullptr) curl_multi_cleanup(static_cast<CURLM *>(multi_));
        throw std::runtime_error("cannot set up the LLM client (epoll, eventfd or curl multi)");
    }
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.fd = thread_wake_fd_;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, thread_wake_fd_, &event);
    CURLM *multi = static_cast<CURLM *>(multi_);
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, &epoll_fd_);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(multi, CURLMOPT_TIMERDATA, &curl_deadline_ns_);
}

LlmClient::~LlmClient() {
    stop();
    curl_multi_cleanup(static_cast<CURLM *>(multi_));
    close(epoll_fd_);
    close(thread_wake_fd_);
}

void LlmClient::start() {
    thread_ = start_signal_free_thread([this]() { run(); });
}

void LlmClient::stop() {
    if (!thread_.joinable()) return;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = true;
    }
    notify_thread();
    thread_.join();
}

void LlmClient::submit(LlmRequest request) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        submitted_.push_back(std::move(request));
    }
    notify_thread();
}

void LlmClient::abort(uint64_t id) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        aborted_.push_back(id);
    }
    notify_thread();
}

void LlmClient::drain(std::vector<LlmUpdate> &out) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto &update : updates_) out.push_back(std::move(update));
    updates_.clear();
    open_delta_.clear();
    worker_woken_ = false;
}

void LlmClient::notify_thread() {
    uint64_t one = 1;
    ssize_t written = write(thread_wake_fd_, &one, sizeof(one));
    (void)written;  // EAGAIN: already signalled
}

// How long text may wait for other text before the worker is woken for it.
// The worker writes a generation's text at most every 50 ms anyway
// (generations.cpp), so this costs no latency a reader sees.
constexpr std::chrono::milliseconds kWakeBatch{10};

void LlmClient::post(LlmUpdate update) {
    bool urgent = true;  // an end, or a request's first text (time to first token)
    if (update.kind == LlmUpdate::Kind::Delta) {
        count(metrics().upstream_tokens);
        urgent = texted_.insert(update.id).second;
    } else {
        texted_.erase(update.id);
    }
    bool wake = false;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        auto open = open_delta_.find(update.id);
        if (update.kind == LlmUpdate::Kind::Delta && open != open_delta_.end()) {
            updates_[open->second].text += update.text;
        } else {
            if (update.kind == LlmUpdate::Kind::Delta)
                open_delta_[update.id] = updates_.size();
            else if (open != open_delta_.end())
                open_delta_.erase(open);  // later text (none comes) must not join a delta before the end
            updates_.push_back(std::move(update));
        }
        if (!worker_woken_ && urgent) worker_woken_ = wake = true;
    }
    if (wake) {
        uint64_t one = 1;
        ssize_t written = write(wake_fd_, &one, sizeof(one));
        (void)written;  // EAGAIN: the counter is already non-zero, the worker is awake
    } else if (!urgent && wake_due_ == LlmClock::time_point::max()) {
        wake_due_ = LlmClock::now() + kWakeBatch;
    }
}

void LlmClient::wake_worker_if_due(LlmClock::time_point now) {
    if (wake_due_ > now) return;
    wake_due_ = LlmClock::time_point::max();
    bool wake = false;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!updates_.empty() && !worker_woken_) worker_woken_ = wake = true;
    }
    if (wake) {
        uint64_t one = 1;
        ssize_t written = write(wake_fd_, &one, sizeof(one));
        (void)written;
    }
}

// --- HTTP transfers -------------------------------------------------------------

// Acts on one SSE event of a 2xx stream. Returns false once the answer is
// over (the transfer stops reading).
static bool on_event(LlmClient::Transfer &t, const std::string &event) {
    t.events_seen++;
    CompletionChunk chunk = parse_completion_chunk(event);
    switch (chunk.kind) {
        case CompletionChunk::Kind::Content:
            if (!chunk.delta.empty()) {
                t.got_token = true;
                t.answer_bytes += chunk.delta.size();
                t.emit(LlmUpdate{LlmUpdate::Kind::Delta, t.request.id, std::move(chunk.delta), {}});
                if (t.answer_bytes > t.request.max_answer_bytes) {
                    t.finish(LlmUpdate::Kind::Done, "length");
                    return false;
                }
            }
            if (!chunk.finish_reason.empty()) {
                // The answer is complete; a usage chunk or [DONE] may follow,
                // but nothing that changes it.
                t.finish(LlmUpdate::Kind::Done, chunk.finish_reason);
                return false;
            }
            return true;
        case CompletionChunk::Kind::Done: t.finish(LlmUpdate::Kind::Done, "stop"); return false;
        case CompletionChunk::Kind::Error:
            fprintf(stderr, "resumable_ws: generation %llu: the model provider reported an error (%s)\n",
                    static_cast<unsigned long long>(t.request.id),
                    chunk.error_type.empty() ? "no type" : chunk.error_type.c_str());
            t.finish(LlmUpdate::Kind::Error, "upstream_error", "the model provider reported an error");
            return false;
        case CompletionChunk::Kind::Malformed:
            // Tolerated (some servers send oddities); an answer made only of
            // these ends as bad_response.
            if (t.malformed++ == 0)
                fprintf(stderr, "resumable_ws: generation %llu: skipping a malformed stream event\n",
                        static_cast<unsigned long long>(t.request.id));
            return true;
    }
    return true;
}

static size_t read_body(LlmClient::Transfer *t, char *data, size_t bytes) {
    if (t->finished) return 0;  // already decided; stop reading
    t->last_activity = LlmClock::now();
    if (t->status == 0) curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->status);
    if (t->status < 200 || t->status > 299) {
        size_t keep = std::min(bytes, kMaxErrorBody - std::min(kMaxErrorBody, t->error_body.size()));
        t->error_body.append(data, keep);
        return bytes;
    }
    t->events.clear();
    t->sse.feed(data, bytes, t->events);
    for (const std::string &event : t->events)
        if (!on_event(*t, event)) return 0;
    return bytes;
}

static size_t on_body(char *data, size_t size, size_t count, void *user) noexcept {
    auto *t = static_cast<LlmClient::Transfer *>(user);
    try {
        return read_body(t, data, size * count);
    } catch (...) {
        // Out of memory, most likely: this answer fails (on_attempt_done),
        // the thread and every other answer go on.
        t->internal_failure = true;
        return 0;
    }
}

static void release_handle(CURLM *multi, LlmClient::Transfer &t) {
    if (t.easy != nullptr) {
        curl_multi_remove_handle(multi, t.easy);
        curl_easy_cleanup(t.easy);
        t.easy = nullptr;
    }
    if (t.headers != nullptr) {
        curl_slist_free_all(t.headers);
        t.headers = nullptr;
    }
}

static bool begin_attempt(CURLM *multi, LlmClient::Transfer &t) {
    t.waiting_retry = false;
    t.status = 0;
    t.sse = SseParser();
    t.error_body.clear();
    t.malformed = 0;
    t.events_seen = 0;
    t.last_activity = LlmClock::now();

    t.easy = curl_easy_init();
    if (t.easy == nullptr) return false;
    t.headers = curl_slist_append(t.headers, "Content-Type: application/json");
    t.headers = curl_slist_append(t.headers, "Accept: text/event-stream");
    if (!t.request.api_key.empty())
        t.headers = curl_slist_append(t.headers, ("Authorization: Bearer " + t.request.api_key).c_str());
    CURL *e = t.easy;
    curl_easy_setopt(e, CURLOPT_URL, t.request.url.c_str());
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    // Dropping a transfer whose name lookup still runs must not wait for the
    // resolver (a silent DNS server would hold up shutdown or a reload).
    curl_easy_setopt(e, CURLOPT_QUICK_EXIT, 1L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, t.headers);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(t.request.body.size()));
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, t.request.body.data());  // t.request outlives the handle
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, t.request.connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(e, CURLOPT_PRIVATE, &t);
    if (curl_multi_add_handle(multi, e) != CURLM_OK) {
        release_handle(multi, t);
        return false;
    }
    return true;
}

static bool transport_failure_is_retryable(CURLcode code) {
    switch (code) {
        case CURLE_COULDNT_CONNECT:
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_OPERATION_TIMEDOUT:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_SSL_CONNECT_ERROR: return true;
        default: return false;
    }
}

// Decides what a finished attempt means: done, an error, or another try.
static void on_attempt_done(CURLM *multi, LlmClient::Transfer &t, CURLcode result) {
    if (t.status == 0) curl_easy_getinfo(t.easy, CURLINFO_RESPONSE_CODE, &t.status);
    curl_off_t retry_after = 0;
    curl_easy_getinfo(t.easy, CURLINFO_RETRY_AFTER, &retry_after);
    release_handle(multi, t);
    if (t.finished) return;
    unsigned long long id = t.request.id;
    if (t.internal_failure) {
        fprintf(stderr, "resumable_ws: generation %llu: failed reading the answer (out of memory?)\n", id);
        t.finish(LlmUpdate::Kind::Error, "unavailable", "the answer could not be read");
        return;
    }

    bool ok_status = t.status >= 200 && t.status <= 299;
    if (result == CURLE_OK && ok_status) {
        // The stream ended without [DONE] or a finish_reason: a last event
        // may lack its blank line.
        t.events.clear();
        t.sse.feed("\n\n", 2, t.events);
        for (const std::string &event : t.events)
            if (!on_event(t, event)) return;
        // Nothing but oddities, or no event at all (a server that ignored
        // stream: true and sent plain JSON): not an answer.
        if (!t.got_token && (t.malformed > 0 || t.events_seen == 0)) {
            t.finish(LlmUpdate::Kind::Error, "bad_response",
                     "the model provider sent a response that could not be read");
            return;
        }
        t.finish(LlmUpdate::Kind::Done, "stop");
        return;
    }

    bool retryable;
    const char *code;
    const char *message;
    if (result == CURLE_OK) {  // an HTTP error status
        retryable = t.status == 429 || t.status >= 500;
        code = t.status == 429 ? "rate_limited" : "upstream_error";
        message = t.status == 429 ? "the model provider is rate limiting requests; try again later"
                                  : "the model provider returned an error";
        // The body's error type helps an operator; its message may quote
        // part of the key, so it is not logged.
        std::string type;
        CompletionChunk parsed = parse_completion_chunk(t.error_body);
        if (parsed.kind == CompletionChunk::Kind::Error) type = parsed.error_type;
        fprintf(stderr, "resumable_ws: generation %llu: the model provider answered HTTP %ld%s%s\n", id, t.status,
                type.empty() ? "" : ", error type ", type.c_str());
    } else {
        retryable = transport_failure_is_retryable(result);
        code = "unavailable";
        message =
            t.got_token ? "the connection to the model provider broke" : "the model provider could not be reached";
        fprintf(stderr, "resumable_ws: generation %llu: request failed: %s\n", id, curl_easy_strerror(result));
    }

    if (retryable && !t.got_token && t.attempt < t.request.max_retries) {
        milliseconds backoff = std::min(kMaxBackoff, kFirstBackoff * (1 << std::min(t.attempt, 8)));
        if (retry_after > 0) backoff = milliseconds(1000 * std::min<long>(retry_after, kMaxRetryAfterSeconds));
        t.attempt++;
        t.waiting_retry = true;
        t.retry_at = LlmClock::now() + backoff;
        return;
    }
    if (t.got_token && result == CURLE_OK) message = "the model provider failed in the middle of the answer";
    t.finish(LlmUpdate::Kind::Error, code, message);
}

void LlmClient::run() noexcept {
    // No exception may leave the thread: std::terminate would abort the
    // worker, and a crashed worker restarts the whole cluster. After one
    // (memory exhausted, most likely) the answers in flight fail and the
    // thread goes on serving.
    for (;;) {
        const char *what = nullptr;
        try {
            serve();
            break;  // stop() asked
        } catch (const std::exception &e) {
            what = e.what();
            fprintf(stderr, "resumable_ws: LLM thread: %s; failing the answers in flight\n", what);
        } catch (...) {
            fprintf(stderr, "resumable_ws: LLM thread: unknown exception; failing the answers in flight\n");
        }
        fail_all_transfers();
    }
    CURLM *multi = static_cast<CURLM *>(multi_);
    for (auto &entry : transfers_) release_handle(multi, *entry.second);
}

void LlmClient::fail_all_transfers() noexcept {
    CURLM *multi = static_cast<CURLM *>(multi_);
    for (auto &entry : transfers_) {
        release_handle(multi, *entry.second);
        try {
            entry.second->finish(LlmUpdate::Kind::Error, "unavailable", "the server could not continue this answer");
        } catch (...) {
        }
    }
    transfers_.clear();
}

void LlmClient::serve() {
    CURLM *multi = static_cast<CURLM *>(multi_);
    auto &transfers = transfers_;
    std::vector<LlmRequest> incoming;
    std::vector<uint64_t> aborted;
    constexpr int kMaxReady = 256;
    epoll_event ready[kMaxReady];
    int ready_count = 0;
    LlmClock::time_point timers_due = LlmClock::now();

    for (;;) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (stopping_) break;
            incoming.swap(submitted_);
            aborted.swap(aborted_);
        }
        auto now = LlmClock::now();
        for (LlmRequest &request : incoming) {
            auto t = std::make_unique<Transfer>();
            t->client = this;
            t->request = std::move(request);
            if (t->request.echo) {
                t->pieces = echo_answer_pieces(t->request.echo_message);
                t->next_due = now + kEchoPieceInterval;
            } else if (!begin_attempt(multi, *t)) {
                t->finish(LlmUpdate::Kind::Error, "unavailable", "the model provider could not be reached");
            }
            uint64_t id = t->request.id;
            transfers[id] = std::move(t);
        }
        if (!incoming.empty()) timers_stale_ = true;  // echo and retry timers to set
        incoming.clear();
        for (uint64_t id : aborted) {
            texted_.erase(id);
            auto it = transfers.find(id);
            if (it == transfers.end()) continue;
            release_handle(multi, *it->second);
            transfers.erase(it);
        }
        aborted.clear();

        // Sockets that epoll reported ready, then curl's own timer.
        int running = 0;
        for (int i = 0; i < ready_count; i++) {
            if (ready[i].data.fd == thread_wake_fd_) continue;
            int flags = (ready[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) |
                        (ready[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                        (ready[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
            curl_multi_socket_action(multi, ready[i].data.fd, flags, &running);
        }
        ready_count = 0;
        if (curl_deadline_ns_ >= 0 && LlmClock::now() >= from_ns(curl_deadline_ns_)) {
            curl_deadline_ns_ = -1;
            curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
        }
        int left = 0;
        while (CURLMsg *msg = curl_multi_info_read(multi, &left)) {
            if (msg->msg != CURLMSG_DONE) continue;
            Transfer *t = nullptr;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &t);
            if (t != nullptr) on_attempt_done(multi, *t, msg->data.result);
            timers_stale_ = true;  // a retry may have been scheduled
        }

        // Timers: echo pieces, retries, stalled upstreams. Scanned when one
        // is due or the set changed, not at every wake: with many streams
        // the thread wakes thousands of times a second. (A stall deadline
        // only moves later with activity, so a scan at the old one is early,
        // never late.)
        now = LlmClock::now();
        if (timers_stale_ || now >= timers_due) {
            timers_stale_ = false;
            auto next = now + milliseconds(1000);
            for (auto &entry : transfers) {
                Transfer &t = *entry.second;
                if (t.finished) continue;
                if (t.request.echo) {
                    while (!t.finished && t.next_due <= now) {
                        if (t.next_piece < t.pieces.size()) {
                            post(LlmUpdate{LlmUpdate::Kind::Delta, t.request.id, t.pieces[t.next_piece++], {}});
                            t.next_due += kEchoPieceInterval;
                        } else {
                            t.finish(LlmUpdate::Kind::Done, "stop");
                        }
                    }
                    if (!t.finished) next = std::min(next, t.next_due);
                } else if (t.waiting_retry) {
                    if (t.retry_at <= now) {
                        if (!begin_attempt(multi, t))
                            t.finish(LlmUpdate::Kind::Error, "unavailable", "the model provider could not be reached");
                        else
                            next = now;  // start it at once
                    } else {
                        next = std::min(next, t.retry_at);
                    }
                } else if (t.easy != nullptr) {
                    auto deadline = t.last_activity + milliseconds(t.request.idle_timeout_ms);
                    if (deadline <= now) {
                        fprintf(stderr, "resumable_ws: generation %llu: no data from the model provider for %ld ms\n",
                                static_cast<unsigned long long>(t.request.id), t.request.idle_timeout_ms);
                        release_handle(multi, t);
                        t.finish(LlmUpdate::Kind::Error, "timeout", "the model provider stopped responding");
                    } else {
                        next = std::min(next, deadline);
                    }
                }
            }
            for (auto it = transfers.begin(); it != transfers.end();)
                it = it->second->finished ? transfers.erase(it) : std::next(it);
            timers_due = next;
        }
        auto next = timers_due;
        if (curl_deadline_ns_ >= 0) next = std::min(next, from_ns(curl_deadline_ns_));
        wake_worker_if_due(now);
        next = std::min(next, wake_due_);
        long wait_ms = std::max<long>(0, std::chrono::duration_cast<milliseconds>(next - now).count());
        ready_count = epoll_wait(epoll_fd_, ready, kMaxReady, static_cast<int>(wait_ms));
        if (ready_count < 0) ready_count = 0;  // EINTR cannot happen (signals blocked); be safe
        for (int i = 0; i < ready_count; i++) {
            if (ready[i].data.fd != thread_wake_fd_) continue;
            uint64_t ignored;
            while (read(thread_wake_fd_, &ignored, sizeof(ignored)) > 0) {
            }
        }
    }
}

}  // namespace rws
