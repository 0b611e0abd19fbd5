// Unit tests of the metrics: the Prometheus text writer, the rendering of the
// shared counters, the metrics_addresses filter and the connection records.
#include "address_filter.hpp"
#include "connection_records.hpp"
#include "metrics.hpp"
#include "prometheus.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <set>
#include <string>

namespace {

using rws::AddressFilter;
using rws::PrometheusWriter;

TEST(Prometheus, LabelValuesAndHelpAreEscaped) {
    EXPECT_EQ(PrometheusWriter::escape_label_value("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    EXPECT_EQ(PrometheusWriter::escape_help("x \"y\" \\ z\nw"), "x \"y\" \\\\ z\\nw");
    PrometheusWriter w;
    w.family("rws_x_total", "counter", "Things.\nMore");
    w.sample("rws_x_total", {{"reason", "a\"b"}, {"k", "v"}}, uint64_t{3});
    EXPECT_EQ(w.text(),
              "# HELP rws_x_total Things.\\nMore\n# TYPE rws_x_total counter\n"
              "rws_x_total{reason=\"a\\\"b\",k=\"v\"} 3\n");
}

TEST(Prometheus, DoublesAreShortAndSpecialValuesSpelledAsGo) {
    EXPECT_EQ(PrometheusWriter::format_double(0.25), "0.25");
    EXPECT_EQ(PrometheusWriter::format_double(1e-05), "1e-05");
    EXPECT_EQ(PrometheusWriter::format_double(0.1), "0.1");
    EXPECT_EQ(PrometheusWriter::format_double(1.0 / 3), "0.3333333333333333");
    EXPECT_EQ(PrometheusWriter::format_double(1.0 / 0.0), "+Inf");
    EXPECT_EQ(PrometheusWriter::format_double(-1.0 / 0.0), "-Inf");
    EXPECT_EQ(PrometheusWriter::format_double(0.0 / 0.0), "NaN");
}

TEST(Prometheus, HistogramHasCumulativeBucketsSumAndCount) {
    PrometheusWriter w;
    w.histogram("rws_d_seconds", {}, {0.1, 1}, {2, 5, 7}, 3.5);
    EXPECT_EQ(w.text(),
              "rws_d_seconds_bucket{le=\"0.1\"} 2\nrws_d_seconds_bucket{le=\"1\"} 5\n"
              "rws_d_seconds_bucket{le=\"+Inf\"} 7\nrws_d_seconds_sum 3.5\nrws_d_seconds_count 7\n");
}

TEST(Metrics, HistogramObservationsLandInTheirBucket) {
    auto shared = std::make_unique<rws::SharedMetrics>();
    using std::chrono::milliseconds;
    shared->commit_duration.observe(rws::kDurationBuckets, milliseconds(1));      // le 0.001 (bound inclusive)
    shared->commit_duration.observe(rws::kDurationBuckets, milliseconds(2));      // le 0.0025
    shared->commit_duration.observe(rws::kDurationBuckets, milliseconds(20000));  // +Inf
    rws::MetricsSnapshot s = rws::snapshot(*shared);
    const auto &h = s.commit_duration;
    ASSERT_EQ(h.cumulative.size(), h.bounds.size() + 1);
    EXPECT_EQ(h.count(), 3u);
    EXPECT_DOUBLE_EQ(h.sum, 20.003);
    for (size_t i = 0; i < h.bounds.size(); i++) {
        uint64_t expected = h.bounds[i] >= 0.0025 ? 2 : h.bounds[i] >= 0.001 ? 1 : 0;
        EXPECT_EQ(h.cumulative[i], expected) << "le " << h.bounds[i];
    }
}

TEST(Metrics, RenderingNamesEveryFamilyOnceWithTypeAndLabels) {
    auto shared = std::make_unique<rws::SharedMetrics>();
    rws::count(shared->events_appended[rws::kSourcePublish], 4);
    rws::count(shared->auth_failures[rws::kAuthExpired]);
    shared->workers[1].started_at = 1700000000;
    shared->workers[1].connections = 7;
    shared->workers[2].connections = 99;  // no worker in slot 2: not counted
    std::string text = rws::render_metrics(rws::snapshot(*shared));
    EXPECT_NE(text.find("rws_events_appended_total{source=\"publish\"} 4\n"), std::string::npos);
    EXPECT_NE(text.find("rws_events_appended_total{source=\"client\"} 0\n"), std::string::npos);
    EXPECT_NE(text.find("rws_auth_failures_total{reason=\"expired\"} 1\n"), std::string::npos);
    EXPECT_NE(text.find("rws_connections 7\n"), std::string::npos);
    EXPECT_NE(text.find("rws_workers 1\n"), std::string::npos);
    EXPECT_NE(text.find("# TYPE rws_time_to_first_token_seconds histogram\n"), std::string::npos);
    // Every TYPE line is unique and every sample name starts with rws_.
    std::set<std::string> types;
    size_t start = 0;
    while (start < text.size()) {
        size_t end = text.find('\n', start);
        std::string line = text.substr(start, end - start);
        start = end + 1;
        if (line.rfind("# TYPE ", 0) == 0) {
            EXPECT_TRUE(types.insert(line).second) << line;
        }
        if (line[0] != '#') {
            EXPECT_EQ(line.rfind("rws_", 0), 0u) << line;
        }
    }
    EXPECT_GE(types.size(), 20u);
}

TEST(Metrics, StatColumnsHaveUniqueNamesAndTotals) {
    auto shared = std::make_unique<rws::SharedMetrics>();
    rws::count(shared->generations[rws::kOutcomeCompleted], 2);
    rws::count(shared->generations[rws::kOutcomeError]);
    auto columns = rws::stat_columns(rws::snapshot(*shared));
    EXPECT_EQ(columns.size(), 46u);  // as declared by resumable_ws._stats in the SQL script
    std::set<std::string> names;
    for (const auto &column : columns) EXPECT_TRUE(names.insert(column.name).second) << column.name;
    for (const auto &column : columns)
        if (column.name == "generations") {
            EXPECT_EQ(column.int_value, 3);
        }
}

TEST(Metrics, AuthFailureReasonsAreClassified) {
    using rws::TokenFailure;
    EXPECT_EQ(rws::classify_auth_failure(TokenFailure::Missing), rws::kAuthMissing);
    EXPECT_EQ(rws::classify_auth_failure(TokenFailure::Expired), rws::kAuthExpired);
    EXPECT_EQ(rws::classify_auth_failure(TokenFailure::BadSignature), rws::kAuthBadSignature);
    EXPECT_EQ(rws::classify_auth_failure(TokenFailure::UnknownKey), rws::kAuthUnknownKey);
    EXPECT_EQ(rws::classify_auth_failure(TokenFailure::Claims), rws::kAuthClaims);
    EXPECT_EQ(rws::classify_auth_failure(TokenFailure::Malformed), rws::kAuthMalformed);
    EXPECT_EQ(rws::classify_auth_failure(TokenFailure::NotConfigured), rws::kAuthOther);
    EXPECT_EQ(rws::done_outcome("stop"), rws::kOutcomeCompleted);
    EXPECT_EQ(rws::done_outcome("length"), rws::kOutcomeLength);
    EXPECT_EQ(rws::error_outcome("interrupted"), rws::kOutcomeInterrupted);
    EXPECT_EQ(rws::error_outcome("upstream_error"), rws::kOutcomeError);
}

TEST(AddressFilter, SettingListsAreSplitAndTrimmed) {
    using List = std::vector<std::string>;
    EXPECT_EQ(rws::split_list(""), List());
    EXPECT_EQ(rws::split_list(" , ,\t"), List());
    EXPECT_EQ(rws::split_list("127.0.0.1"), List({"127.0.0.1"}));
    EXPECT_EQ(rws::split_list(" 127.0.0.1 ,\t::1/128,, 10.0.0.0/8 "), List({"127.0.0.1", "::1/128", "10.0.0.0/8"}));
}

TEST(AddressFilter, AddressesAndNetworksMatch) {
    AddressFilter f;
    std::string error;
    ASSERT_TRUE(f.parse(" 127.0.0.1/32, ::1/128 ,10.0.0.0/8,192.168.1.7, fe80::/10", error)) << error;
    EXPECT_EQ(f.size(), 5u);
    EXPECT_TRUE(f.matches("127.0.0.1"));
    EXPECT_FALSE(f.matches("127.0.0.2"));
    EXPECT_TRUE(f.matches("::1"));
    EXPECT_TRUE(f.matches("10.255.3.4"));
    EXPECT_FALSE(f.matches("11.0.0.1"));
    EXPECT_TRUE(f.matches("192.168.1.7"));
    EXPECT_FALSE(f.matches("192.168.1.8"));
    EXPECT_TRUE(f.matches("fe80::1234"));
    EXPECT_TRUE(f.matches("febf::1"));
    EXPECT_FALSE(f.matches("fec0::1"));
    EXPECT_FALSE(f.matches("not an address"));
    EXPECT_FALSE(f.matches(""));
}

TEST(AddressFilter, Ipv4MappedPeersMatchTheirIpv4Networks) {
    AddressFilter f;
    std::string error;
    ASSERT_TRUE(f.parse("127.0.0.1/32", error));
    EXPECT_TRUE(f.matches("::ffff:127.0.0.1"));
    EXPECT_FALSE(f.matches("::ffff:127.0.0.2"));
    EXPECT_FALSE(f.matches("::1"));  // IPv6 loopback is another address
    ASSERT_TRUE(f.parse("::ffff:10.0.0.0/104", error)) << error;
    EXPECT_TRUE(f.matches("10.1.2.3"));
    EXPECT_FALSE(f.matches("11.1.2.3"));
}

TEST(AddressFilter, EdgePrefixes) {
    AddressFilter f;
    std::string error;
    ASSERT_TRUE(f.parse("0.0.0.0/0", error));
    EXPECT_TRUE(f.matches("8.8.8.8"));
    EXPECT_FALSE(f.matches("::1"));
    ASSERT_TRUE(f.parse("10.0.0.0/9", error));
    EXPECT_TRUE(f.matches("10.127.0.1"));
    EXPECT_FALSE(f.matches("10.128.0.1"));
    ASSERT_TRUE(f.parse("::/0", error));
    EXPECT_TRUE(f.matches("2001:db8::1"));
}

TEST(AddressFilter, EmptyListMatchesNobodyAndBadEntriesAreRefused) {
    AddressFilter f;
    std::string error;
    ASSERT_TRUE(f.parse("", error));
    EXPECT_EQ(f.size(), 0u);
    EXPECT_FALSE(f.matches("127.0.0.1"));
    ASSERT_TRUE(f.parse(" , ", error));
    EXPECT_EQ(f.size(), 0u);
    for (const char *bad : {"localhost", "127.0.0.1/33", "::1/129", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/8x", "1.2.3",
                            "127.0.0.1/32,garbage", "10.0.0.0/0008"}) {
        error.clear();
        EXPECT_FALSE(f.parse(bad, error)) << bad;
        EXPECT_NE(error, "") << bad;
        EXPECT_EQ(f.size(), 0u) << bad;
        EXPECT_FALSE(f.matches("127.0.0.1")) << bad;
    }
}

TEST(ConnectionRecords, ClaimWriteReleaseAndRead) {
    const uint32_t capacity = 4;
    std::unique_ptr<char[]> memory(new char[rws::connection_table_size(capacity)]);
    auto *table = reinterpret_cast<rws::ConnectionTable *>(memory.get());
    rws::init_connection_table(table, capacity);
    rws::use_connection_table(table, 0);
    EXPECT_TRUE(rws::read_connection_records(table).empty());

    rws::ConnectionFields fields;
    fields.worker_pid = 42;
    strcpy(fields.user_id, "11111111-1111-1111-1111-111111111111");
    int indexes[5];
    for (int i = 0; i < 5; i++) {
        fields.cursor = i;
        indexes[i] = rws::claim_connection_record(fields);
    }
    EXPECT_EQ(indexes[4], -1);  // full: served, not listed
    EXPECT_EQ(rws::read_connection_records(table).size(), 4u);

    rws::release_connection_record(indexes[1]);
    auto records = rws::read_connection_records(table);
    ASSERT_EQ(records.size(), 3u);
    std::set<int64_t> cursors;
    for (const auto &record : records) cursors.insert(record.cursor);
    EXPECT_EQ(cursors, (std::set<int64_t>{0, 2, 3}));

    fields.cursor = 77;
    rws::write_connection_record(indexes[2], fields);
    cursors.clear();
    for (const auto &record : rws::read_connection_records(table)) cursors.insert(record.cursor);
    EXPECT_EQ(cursors, (std::set<int64_t>{0, 77, 3}));

    EXPECT_GE(rws::claim_connection_record(fields), 0);  // the freed record is reused
    rws::release_slot_records();                         // a new worker of this slot starts clean
    EXPECT_TRUE(rws::read_connection_records(table).empty());
    rws::use_connection_table(nullptr, -1);
}

}  // namespace
