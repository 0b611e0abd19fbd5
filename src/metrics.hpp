// Counters, gauges and histograms of the server, kept in shared memory so
// that any backend can read them (GET /metrics, the resumable_ws.stats view):
// the pg_stat_statements pattern. Written with relaxed atomic adds by the
// worker (and, for published events, by committing backends); never locked.
// Pure C++: until shared memory is attached (unit tests), a process-local
// instance is used.
#pragma once

#include "auth.hpp"

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace rws {

constexpr int kMaxWorkerSlots = 8;  // = kMaxWorkers of settings.hpp

using Counter = std::atomic<uint64_t>;
static_assert(Counter::is_always_lock_free, "atomics in shared memory must be lock-free (address-free)");

// Why a WebSocket connection did not become ready.
enum RefuseReason {
    kRefuseBadHandshake,        // upgrade answered 400/404/426
    kRefuseTooManyConnections,  // max_connections (503)
    kRefuseRestarting,          // upgraded during shutdown
    kRefuseUnauthorized,        // 4001
    kRefuseForbidden,           // 4003
    kRefuseSessionNotFound,     // 4004
    kRefuseInternalError,       // 1011: the session could not be opened
    kRefuseReasons
};
// Why a token was refused (at the upgrade or in an auth frame).
enum AuthFailure {
    kAuthMissing,
    kAuthMalformed,
    kAuthBadSignature,
    kAuthUnknownKey,
    kAuthExpired,
    kAuthClaims,
    kAuthOther,
    kAuthFailures
};
// Who appended an event.
enum EventSource { kSourceClient, kSourceGeneration, kSourcePublish, kEventSources };
// How a generation ended.
enum GenerationOutcome {
    kOutcomeCompleted,    // assistant_done with a finish_reason other than length/cancelled
    kOutcomeLength,       // cut off (max_event_size, or the model's limit)
    kOutcomeCancelled,    // a client's cancel, or the session closed
    kOutcomeError,        // assistant_error from upstream
    kOutcomeInterrupted,  // a restart cut it off
    kOutcomeSkipped,      // never started (session closed, or provider none)
    kGenerationOutcomes
};

const char *label(RefuseReason reason);
const char *label(AuthFailure reason);
const char *label(EventSource source);
const char *label(GenerationOutcome outcome);

// The counter of a refused token's TokenFailure.
AuthFailure classify_auth_failure(TokenFailure failure);
// The outcome of a generation that ended with this finish_reason or error code.
GenerationOutcome done_outcome(const std::string &finish_reason);
GenerationOutcome error_outcome(const std::string &code);

// Upper bounds of histogram buckets, in seconds, ascending (+Inf implied).
struct Buckets {
    const double *bounds;
    size_t size;
};
extern const Buckets kDurationBuckets;    // commits and passes: 50 µs .. 10 s
extern const Buckets kFirstTokenBuckets;  // time to first token: 10 ms .. 60 s
constexpr size_t kMaxBuckets = 16;

struct Histogram {
    Counter counts[kMaxBuckets + 1];  // per bucket (not cumulative); [size]: above the last bound
    Counter sum_ns;
    void observe(const Buckets &buckets, std::chrono::nanoseconds duration);
};

// Gauges are per worker slot (a worker stores, it never adds), summed when read.
struct WorkerGauges {
    std::atomic<int64_t> connections;       // WebSocket connections open
    std::atomic<int64_t> llm_queue_length;  // generations waiting for a slot
    std::atomic<int64_t> started_at;        // Unix seconds; 0: no worker in this slot
};

struct SharedMetrics {
    Counter connections_accepted;  // became ready (a session opened)
    Counter connections_refused[kRefuseReasons];
    Counter auth_failures[kAuthFailures];
    Counter frames_received, frames_sent;  // WebSocket messages (text/binary), not pings or closes
    Counter bytes_received, bytes_sent;    // their payloads
    Counter events_appended[kEventSources];
    Counter events_delivered;      // events queued to a connection (each connection counts)
    Counter replays;               // catch-ups started (last_event_id on connect, or a resume frame)
    Counter replayed_events;       // the part of events_delivered that caught up
    Counter slow_consumer_closes;  // 4010
    Counter generations[kGenerationOutcomes];
    Counter upstream_tokens;  // text deltas received upstream (one per SSE chunk with content, or echo piece)
    Histogram commit_duration;
    Histogram pass_duration;
    Histogram time_to_first_token;
    WorkerGauges workers[kMaxWorkerSlots];
};

SharedMetrics &metrics();
void use_shared_metrics(SharedMetrics *shared);  // from the shmem startup hook
// This worker's gauges (a process-local instance until a slot is claimed).
WorkerGauges &worker_gauges();
void use_worker_gauges(WorkerGauges *gauges);

inline void count(Counter &counter, uint64_t n = 1) {
    counter.fetch_add(n, std::memory_order_relaxed);
}

// A consistent enough copy to render: every value read once.
struct HistogramValues {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;  // per bound, then +Inf (= count)
    double sum = 0;                    // seconds
    uint64_t count() const { return cumulative.empty() ? 0 : cumulative.back(); }
};
struct MetricsSnapshot {
    int64_t connections = 0, llm_queue_length = 0, workers = 0;
    int64_t started_at = 0;  // the oldest running worker's start, Unix seconds; 0: none
    uint64_t connections_accepted = 0;
    uint64_t connections_refused[kRefuseReasons] = {};
    uint64_t auth_failures[kAuthFailures] = {};
    uint64_t frames_received = 0, frames_sent = 0, bytes_received = 0, bytes_sent = 0;
    uint64_t events_appended[kEventSources] = {};
    uint64_t events_delivered = 0, replays = 0, replayed_events = 0, slow_consumer_closes = 0;
    uint64_t generations[kGenerationOutcomes] = {};
    uint64_t upstream_tokens = 0;
    HistogramValues commit_duration, pass_duration, time_to_first_token;
};
MetricsSnapshot snapshot(const SharedMetrics &shared);

// GET /metrics: Prometheus text format 0.0.4.
std::string render_metrics(const MetricsSnapshot &values);

// The resumable_ws.stats view: one column per number, in this order (the
// SQL declaration lists the same names).
struct StatColumn {
    std::string name;
    enum class Kind { Int, Float, Time } kind;  // Time: Unix seconds as timestamptz, NULL when 0
    int64_t int_value = 0;
    double float_value = 0;
};
std::vector<StatColumn> stat_columns(const MetricsSnapshot &values);

}  // namespace rws
