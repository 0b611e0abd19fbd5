// What the metrics cost on the worker's hot path, per operation: a counter
// increment, a histogram observation, a connection record write, and a
// scrape (snapshot + rendering). Build and run:
//   g++ -O2 -std=c++17 -Isrc bench/metrics_overhead.cpp src/metrics.cpp src/prometheus.cpp \
//       src/connection_records.cpp -lpthread -o /tmp/metrics_overhead && /tmp/metrics_overhead
#include "connection_records.hpp"
#include "metrics.hpp"

#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>
#include <vector>

using Clock = std::chrono::steady_clock;

template <typename Fn>
static double ns_per_op(long n, Fn &&fn) {
    auto start = Clock::now();
    for (long i = 0; i < n; i++) fn(i);
    return std::chrono::duration<double, std::nano>(Clock::now() - start).count() / static_cast<double>(n);
}

int main() {
    auto shared = std::make_unique<rws::SharedMetrics>();
    const long n = 20000000;
    printf("counter increment (relaxed fetch_add), one thread: %.1f ns\n",
           ns_per_op(n, [&](long) { rws::count(shared->events_delivered); }));
    {
        // Two writers on one counter: a worker and committing backends.
        std::thread other([&]() {
            for (long i = 0; i < n; i++) rws::count(shared->events_delivered);
        });
        double ns = ns_per_op(n, [&](long) { rws::count(shared->events_delivered); });
        other.join();
        printf("counter increment, two threads on one counter: %.1f ns\n", ns);
    }
    printf("histogram observation (duration buckets): %.1f ns\n", ns_per_op(n / 4, [&](long i) {
               shared->pass_duration.observe(rws::kDurationBuckets, std::chrono::nanoseconds(1000 + (i & 0xffff)));
           }));
    printf("steady_clock::now() (two per pass, one per commit): %.1f ns\n",
           ns_per_op(n / 4, [&](long) { (void)Clock::now(); }));

    const uint32_t capacity = 10000;
    std::unique_ptr<char[]> memory(new char[rws::connection_table_size(capacity)]);
    auto *table = reinterpret_cast<rws::ConnectionTable *>(memory.get());
    rws::init_connection_table(table, capacity);
    rws::use_connection_table(table, 0);
    rws::ConnectionFields fields;
    fields.worker_pid = 1;
    std::vector<int> records;
    for (uint32_t i = 0; i < capacity; i++) records.push_back(rws::claim_connection_record(fields));
    printf("connection record write (seqlock): %.1f ns\n", ns_per_op(n / 4, [&](long i) {
               fields.cursor = i;
               rws::write_connection_record(records[static_cast<size_t>(i) % capacity], fields);
           }));
    auto start = Clock::now();
    size_t rows = 0;
    for (int i = 0; i < 100; i++) rows += rws::read_connection_records(table).size();
    printf("connections() read of %u records: %.2f ms\n", capacity,
           std::chrono::duration<double, std::milli>(Clock::now() - start).count() / 100);
    start = Clock::now();
    size_t bytes = 0;
    for (int i = 0; i < 1000; i++) bytes += rws::render_metrics(rws::snapshot(*shared)).size();
    printf("scrape (snapshot + render, %zu bytes): %.1f us\n", bytes / 1000,
           std::chrono::duration<double, std::micro>(Clock::now() - start).count() / 1000);
    return rows == 0;
}
