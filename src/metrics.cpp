#include "metrics.hpp"

#include "prometheus.hpp"

#include <new>

#include "cpp_only.hpp"  // must be last: no Postgres in this file

namespace rws {

static const double kDurationBounds[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                         0.01,    0.025,  0.05,    0.1,    0.25,  1,      10};
static const double kFirstTokenBounds[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
const Buckets kDurationBuckets{kDurationBounds, sizeof(kDurationBounds) / sizeof(double)};
const Buckets kFirstTokenBuckets{kFirstTokenBounds, sizeof(kFirstTokenBounds) / sizeof(double)};
static_assert(sizeof(kDurationBounds) / sizeof(double) <= kMaxBuckets, "too many buckets");
static_assert(sizeof(kFirstTokenBounds) / sizeof(double) <= kMaxBuckets, "too many buckets");

// Zero-initialised statics: what is counted before shared memory exists (or
// in unit tests) goes here.
static SharedMetrics local_metrics;
static WorkerGauges local_gauges;
static SharedMetrics *current_metrics = &local_metrics;
static WorkerGauges *current_gauges = &local_gauges;

SharedMetrics &metrics() {
    return *current_metrics;
}
void use_shared_metrics(SharedMetrics *shared) {
    current_metrics = shared != nullptr ? shared : &local_metrics;
}
WorkerGauges &worker_gauges() {
    return *current_gauges;
}
void use_worker_gauges(WorkerGauges *gauges) {
    current_gauges = gauges != nullptr ? gauges : &local_gauges;
}

void Histogram::observe(const Buckets &buckets, std::chrono::nanoseconds duration) {
    double seconds = std::chrono::duration<double>(duration).count();
    size_t i = 0;
    while (i < buckets.size && seconds > buckets.bounds[i]) i++;
    count(counts[i]);
    count(sum_ns, duration.count() > 0 ? static_cast<uint64_t>(duration.count()) : 0);
}

const char *label(RefuseReason reason) {
    switch (reason) {
        case kRefuseBadHandshake: return "bad_handshake";
        case kRefuseTooManyConnections: return "too_many_connections";
        case kRefuseRestarting: return "restarting";
        case kRefuseUnauthorized: return "unauthorized";
        case kRefuseForbidden: return "forbidden";
        case kRefuseSessionNotFound: return "session_not_found";
        case kRefuseInternalError: return "internal_error";
        case kRefuseReasons: break;
    }
    return "unknown";
}

const char *label(AuthFailure reason) {
    switch (reason) {
        case kAuthMissing: return "missing";
        case kAuthMalformed: return "malformed";
        case kAuthBadSignature: return "bad_signature";
        case kAuthUnknownKey: return "unknown_key";
        case kAuthExpired: return "expired";
        case kAuthClaims: return "claims";
        case kAuthOther: return "other";
        case kAuthFailures: break;
    }
    return "unknown";
}

const char *label(EventSource source) {
    switch (source) {
        case kSourceClient: return "client";
        case kSourceGeneration: return "generation";
        case kSourcePublish: return "publish";
        case kEventSources: break;
    }
    return "unknown";
}

const char *label(GenerationOutcome outcome) {
    switch (outcome) {
        case kOutcomeCompleted: return "completed";
        case kOutcomeLength: return "length";
        case kOutcomeCancelled: return "cancelled";
        case kOutcomeError: return "error";
        case kOutcomeInterrupted: return "interrupted";
        case kOutcomeSkipped: return "skipped";
        case kGenerationOutcomes: break;
    }
    return "unknown";
}

AuthFailure classify_auth_failure(TokenFailure failure) {
    switch (failure) {
        case TokenFailure::Missing: return kAuthMissing;
        case TokenFailure::Malformed: return kAuthMalformed;
        case TokenFailure::BadSignature: return kAuthBadSignature;
        case TokenFailure::UnknownKey: return kAuthUnknownKey;
        case TokenFailure::Expired: return kAuthExpired;
        case TokenFailure::Claims: return kAuthClaims;
        case TokenFailure::None:
        case TokenFailure::NotConfigured: break;
    }
    return kAuthOther;
}

GenerationOutcome done_outcome(const std::string &finish_reason) {
    if (finish_reason == "length") return kOutcomeLength;
    if (finish_reason == "cancelled") return kOutcomeCancelled;
    return kOutcomeCompleted;
}

GenerationOutcome error_outcome(const std::string &code) {
    return code == "interrupted" ? kOutcomeInterrupted : kOutcomeError;
}

static uint64_t read(const Counter &counter) {
    return counter.load(std::memory_order_relaxed);
}

static HistogramValues read(const Histogram &histogram, const Buckets &buckets) {
    HistogramValues values;
    values.bounds.assign(buckets.bounds, buckets.bounds + buckets.size);
    uint64_t running = 0;
    for (size_t i = 0; i <= buckets.size; i++) {
        running += read(histogram.counts[i]);
        values.cumulative.push_back(running);
    }
    values.sum = static_cast<double>(read(histogram.sum_ns)) / 1e9;
    return values;
}

MetricsSnapshot snapshot(const SharedMetrics &shared) {
    MetricsSnapshot s;
    for (const WorkerGauges &worker : shared.workers) {
        int64_t started_at = worker.started_at.load(std::memory_order_relaxed);
        if (started_at == 0) continue;
        s.workers++;
        if (s.started_at == 0 || started_at < s.started_at) s.started_at = started_at;
        s.connections += worker.connections.load(std::memory_order_relaxed);
        s.llm_queue_length += worker.llm_queue_length.load(std::memory_order_relaxed);
    }
    s.connections_accepted = read(shared.connections_accepted);
    for (int i = 0; i < kRefuseReasons; i++) s.connections_refused[i] = read(shared.connections_refused[i]);
    for (int i = 0; i < kAuthFailures; i++) s.auth_failures[i] = read(shared.auth_failures[i]);
    s.frames_received = read(shared.frames_received);
    s.frames_sent = read(shared.frames_sent);
    s.bytes_received = read(shared.bytes_received);
    s.bytes_sent = read(shared.bytes_sent);
    for (int i = 0; i < kEventSources; i++) s.events_appended[i] = read(shared.events_appended[i]);
    s.events_delivered = read(shared.events_delivered);
    s.replays = read(shared.replays);
    s.replayed_events = read(shared.replayed_events);
    s.slow_consumer_closes = read(shared.slow_consumer_closes);
    for (int i = 0; i < kGenerationOutcomes; i++) s.generations[i] = read(shared.generations[i]);
    s.upstream_tokens = read(shared.upstream_tokens);
    s.commit_duration = read(shared.commit_duration, kDurationBuckets);
    s.pass_duration = read(shared.pass_duration, kDurationBuckets);
    s.time_to_first_token = read(shared.time_to_first_token, kFirstTokenBuckets);
    return s;
}

std::string render_metrics(const MetricsSnapshot &v) {
    PrometheusWriter w;
    auto gauge = [&](const char *name, const char *help, int64_t value) {
        w.family(name, "gauge", help);
        w.sample(name, {}, value);
    };
    auto counter = [&](const char *name, const char *help, uint64_t value) {
        w.family(name, "counter", help);
        w.sample(name, {}, value);
    };
    auto histogram = [&](const char *name, const char *help, const HistogramValues &h) {
        w.family(name, "histogram", help);
        w.histogram(name, {}, h.bounds, h.cumulative, h.sum);
    };

    gauge("rws_workers", "Worker processes running.", v.workers);
    gauge("rws_worker_start_time_seconds", "Start time of the oldest running worker, in Unix seconds.", v.started_at);
    gauge("rws_connections", "WebSocket connections open.", v.connections);
    counter("rws_connections_accepted_total", "WebSocket connections that opened a session.", v.connections_accepted);
    w.family("rws_connections_refused_total", "counter",
             "WebSocket connections refused before their session opened, by reason.");
    for (int i = 0; i < kRefuseReasons; i++)
        w.sample("rws_connections_refused_total", {{"reason", label(static_cast<RefuseReason>(i))}},
                 v.connections_refused[i]);
    w.family("rws_auth_failures_total", "counter", "Tokens refused, at connection or in an auth frame, by reason.");
    for (int i = 0; i < kAuthFailures; i++)
        w.sample("rws_auth_failures_total", {{"reason", label(static_cast<AuthFailure>(i))}}, v.auth_failures[i]);
    counter("rws_frames_received_total", "WebSocket messages received from clients.", v.frames_received);
    counter("rws_frames_sent_total", "WebSocket messages sent to clients.", v.frames_sent);
    counter("rws_bytes_received_total", "Payload bytes of WebSocket messages received.", v.bytes_received);
    counter("rws_bytes_sent_total", "Payload bytes of WebSocket messages sent.", v.bytes_sent);
    w.family("rws_events_appended_total", "counter",
             "Events committed to session logs, by source (publish: by other backends).");
    for (int i = 0; i < kEventSources; i++)
        w.sample("rws_events_appended_total", {{"source", label(static_cast<EventSource>(i))}}, v.events_appended[i]);
    counter("rws_events_delivered_total", "Events queued to WebSocket connections (each connection counts).",
            v.events_delivered);
    counter("rws_replays_total", "Catch-ups started from a client's last_event_id.", v.replays);
    counter("rws_replayed_events_total", "Events delivered while catching up.", v.replayed_events);
    counter("rws_slow_consumer_closes_total", "Connections closed with 4010 (send buffer over its limit).",
            v.slow_consumer_closes);
    w.family("rws_generations_total", "counter", "AI generations ended, by outcome.");
    for (int i = 0; i < kGenerationOutcomes; i++)
        w.sample("rws_generations_total", {{"outcome", label(static_cast<GenerationOutcome>(i))}}, v.generations[i]);
    counter("rws_upstream_tokens_total",
            "Text deltas received from the LLM upstream (one per streamed chunk with content).", v.upstream_tokens);
    gauge("rws_llm_queue_length", "Generations waiting for a free upstream slot.", v.llm_queue_length);
    histogram("rws_commit_duration_seconds", "Time the worker's commits take.", v.commit_duration);
    histogram("rws_pass_duration_seconds", "Time one pass of the worker's loop takes.", v.pass_duration);
    histogram("rws_time_to_first_token_seconds", "Time from a generation's start to its first upstream text.",
              v.time_to_first_token);
    return w.text();
}

std::vector<StatColumn> stat_columns(const MetricsSnapshot &v) {
    std::vector<StatColumn> columns;
    auto add = [&](std::string name, uint64_t value) {
        columns.push_back(StatColumn{std::move(name), StatColumn::Kind::Int, static_cast<int64_t>(value), 0});
    };
    auto add_float = [&](std::string name, double value) {
        columns.push_back(StatColumn{std::move(name), StatColumn::Kind::Float, 0, value});
    };
    auto add_histogram = [&](const std::string &name, const HistogramValues &h) {
        add(name + "_count", h.count());
        add_float(name + "_seconds_sum", h.sum);
    };
    add("connections", static_cast<uint64_t>(v.connections));
    add("workers", static_cast<uint64_t>(v.workers));
    columns.push_back(StatColumn{"worker_started_at", StatColumn::Kind::Time, v.started_at, 0});
    add("connections_accepted", v.connections_accepted);
    uint64_t total = 0;
    for (uint64_t n : v.connections_refused) total += n;
    add("connections_refused", total);
    for (int i = 0; i < kRefuseReasons; i++)
        add(std::string("connections_refused_") + label(static_cast<RefuseReason>(i)), v.connections_refused[i]);
    total = 0;
    for (uint64_t n : v.auth_failures) total += n;
    add("auth_failures", total);
    for (int i = 0; i < kAuthFailures; i++)
        add(std::string("auth_failures_") + label(static_cast<AuthFailure>(i)), v.auth_failures[i]);
    add("frames_received", v.frames_received);
    add("frames_sent", v.frames_sent);
    add("bytes_received", v.bytes_received);
    add("bytes_sent", v.bytes_sent);
    for (int i = 0; i < kEventSources; i++)
        add(std::string("events_appended_") + label(static_cast<EventSource>(i)), v.events_appended[i]);
    add("events_delivered", v.events_delivered);
    add("replays", v.replays);
    add("replayed_events", v.replayed_events);
    add("slow_consumer_closes", v.slow_consumer_closes);
    total = 0;
    for (uint64_t n : v.generations) total += n;
    add("generations", total);
    for (int i = 0; i < kGenerationOutcomes; i++)
        add(std::string("generations_") + label(static_cast<GenerationOutcome>(i)), v.generations[i]);
    add("upstream_tokens", v.upstream_tokens);
    add("llm_queue_length", static_cast<uint64_t>(v.llm_queue_length));
    add_histogram("commit", v.commit_duration);
    add_histogram("pass", v.pass_duration);
    add_histogram("time_to_first_token", v.time_to_first_token);
    return columns;
}

}  // namespace rws
