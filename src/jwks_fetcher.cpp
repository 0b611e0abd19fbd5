#include "jwks_fetcher.hpp"
#include "signal_free_thread.hpp"

#include <curl/curl.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <stdexcept>

#include "cpp_only.hpp"  // must be last: no Postgres in this file

namespace rws {

using FetchClock = std::chrono::steady_clock;

namespace {

struct Body {
    std::string data;
    bool too_big = false;
};

size_t on_body(char *data, size_t size, size_t count, void *user) noexcept {
    auto *body = static_cast<Body *>(user);
    size_t bytes = size * count;
    if (body->data.size() + bytes > kMaxJwksFetchBytes) {
        body->too_big = true;
        return 0;  // curl ends the transfer (CURLE_WRITE_ERROR)
    }
    try {
        body->data.append(data, bytes);
    } catch (...) {
        return 0;
    }
    return bytes;
}

double ms_since(FetchClock::time_point start) {
    return std::chrono::duration<double, std::milli>(FetchClock::now() - start).count();
}

struct EasyFree {
    void operator()(CURL *easy) const { curl_easy_cleanup(easy); }
};
struct SlistFree {
    void operator()(curl_slist *list) const { curl_slist_free_all(list); }
};

}  // namespace

JwksFetcher::JwksFetcher(int wake_fd) : wake_fd_(wake_fd) {
    // On the worker's thread, before this thread exists (curl_global_init
    // counts its calls; the LLM client makes the same call).
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) throw std::runtime_error("curl_global_init failed");
    multi_ = curl_multi_init();
    if (multi_ == nullptr) throw std::runtime_error("cannot set up the JWKS fetcher (curl multi)");
}

JwksFetcher::~JwksFetcher() {
    stop();
    curl_multi_cleanup(static_cast<CURLM *>(multi_));
}

void JwksFetcher::start() {
    thread_ = start_signal_free_thread([this]() { run(); });
}

void JwksFetcher::stop() {
    if (!thread_.joinable()) return;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = true;
    }
    wanted_.notify_one();
    curl_multi_wakeup(static_cast<CURLM *>(multi_));
    thread_.join();
}

void JwksFetcher::fetch(const std::string &url, uint64_t generation) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        url_ = url;
        generation_ = generation;
        requested_ = true;
        epoch_++;
    }
    wanted_.notify_one();
    curl_multi_wakeup(static_cast<CURLM *>(multi_));
}

void JwksFetcher::cancel() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        requested_ = false;
        epoch_++;
    }
    curl_multi_wakeup(static_cast<CURLM *>(multi_));
}

void JwksFetcher::drain(std::vector<JwksFetchResult> &out) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto &result : results_) out.push_back(std::move(result));
    results_.clear();
}

bool JwksFetcher::interrupted(uint64_t epoch) {
    std::lock_guard<std::mutex> lock(mutex_);
    return stopping_ || epoch_ != epoch;
}

void JwksFetcher::post(JwksFetchResult result) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        results_.push_back(std::move(result));
    }
    uint64_t one = 1;
    ssize_t written = write(wake_fd_, &one, sizeof(one));
    (void)written;  // EAGAIN: the counter is already non-zero, the worker is awake
}

void JwksFetcher::run() noexcept {
    for (;;) {
        std::string url;
        uint64_t generation = 0, epoch = 0;
        try {
            std::unique_lock<std::mutex> lock(mutex_);
            wanted_.wait(lock, [this]() { return stopping_ || requested_; });
            if (stopping_) return;
            requested_ = false;
            url = url_;
            generation = generation_;
            epoch = epoch_;
        } catch (...) {
            return;  // cannot happen short of memory: the worker keeps the keys it has
        }
        JwksFetchResult result;
        try {
            result = perform(url, generation, epoch);
        } catch (...) {
            result = JwksFetchResult();
            result.generation = generation;
            result.error = "the fetch failed (out of memory?)";
        }
        if (interrupted(epoch)) continue;  // abandoned: a newer request or stop
        try {
            post(std::move(result));
        } catch (...) {
        }
    }
}

JwksFetchResult JwksFetcher::perform(const std::string &url, uint64_t generation, uint64_t epoch) {
    JwksFetchResult result;
    result.generation = generation;
    auto started = FetchClock::now();

    std::unique_ptr<CURL, EasyFree> easy(curl_easy_init());
    std::unique_ptr<curl_slist, SlistFree> headers(
        curl_slist_append(nullptr, "Accept: application/jwk-set+json, application/json"));
    if (!easy || !headers) {
        result.error = "cannot set up a curl handle";
        return result;
    }
    Body body;
    CURL *e = easy.get();
    curl_easy_setopt(e, CURLOPT_URL, url.c_str());
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    // A redirect may not leave TLS (nor go from https to http).
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, 3L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    // Dropping a transfer whose name lookup still runs must not wait for the
    // resolver (a silent DNS server would hold up shutdown or a reload).
    curl_easy_setopt(e, CURLOPT_QUICK_EXIT, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, kJwksConnectTimeoutMs);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, kJwksTotalTimeoutMs);
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(kMaxJwksFetchBytes));
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_USERAGENT, "resumable_ws");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers.get());
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &body);

    CURLM *multi = static_cast<CURLM *>(multi_);
    if (curl_multi_add_handle(multi, e) != CURLM_OK) {
        result.error = "cannot start a curl transfer";
        return result;
    }
    CURLcode code = CURLE_OK;
    bool done = false;
    while (!done) {
        int running = 0;
        curl_multi_perform(multi, &running);
        int left = 0;
        while (CURLMsg *msg = curl_multi_info_read(multi, &left))
            if (msg->msg == CURLMSG_DONE) {
                code = msg->data.result;
                done = true;
            }
        if (done) break;
        // curl_multi_wakeup (fetch, cancel, stop) ends the wait early.
        curl_multi_poll(multi, nullptr, 0, 1000, nullptr);
        if (interrupted(epoch)) break;
    }
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(multi, e);
    result.fetch_ms = ms_since(started);
    result.bytes = body.data.size();
    if (!done) {
        result.error = "abandoned";
        return result;
    }
    if (body.too_big || code == CURLE_FILESIZE_EXCEEDED) {
        result.error = "the document is larger than 1 MB";
        return result;
    }
    if (code != CURLE_OK) {
        result.error = curl_easy_strerror(code);
        return result;
    }
    if (status != 200) {
        result.error = "HTTP status " + std::to_string(status);
        return result;
    }
    auto parse_started = FetchClock::now();
    result.parse = parse_jwks(body.data);
    result.parse_ms = ms_since(parse_started);
    if (!result.parse.keys) result.error = result.parse.error;
    return result;
}

}  // namespace rws
