// Unit tests of client frame parsing, server frames and UUID helpers.
#include "protocol.hpp"
#include "event_frame.hpp"
#include "uuid.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <set>

namespace {

using rws::ClientFrameType;
using rws::parse_client_frame;

TEST(Protocol, ParsesEachClientFrame) {
    EXPECT_EQ(parse_client_frame(R"({"type":"ping","x":1})").type, ClientFrameType::Ping);
    EXPECT_EQ(parse_client_frame(R"({"type":"cancel"})").type, ClientFrameType::Cancel);
    auto resume = parse_client_frame(R"({"type":"resume","last_event_id":42})");
    EXPECT_EQ(resume.type, ClientFrameType::Resume);
    EXPECT_EQ(resume.last_event_id, 42);
    auto message = parse_client_frame(
        R"({"type":"user_message","content":"hi ✓","idempotency_key":"AAAAAAAA-bbbb-4ccc-8ddd-eeeeeeeeeeee","extra":[1]})");
    ASSERT_EQ(message.type, ClientFrameType::UserMessage);
    EXPECT_EQ(message.content, "hi ✓");
    EXPECT_EQ(message.idempotency_key, "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee");
    auto auth = parse_client_frame(R"({"type":"auth","token":"t"})");
    EXPECT_EQ(auth.type, ClientFrameType::Auth);
    EXPECT_EQ(auth.token, "t");
}

TEST(Protocol, RejectsMalformedFramesWithAReason) {
    for (const char *text :
         {"", "null", "[]", "\"ping\"", "{", R"({"type":1})", R"({"type":"nope"})",
          R"({"type":"resume","last_event_id":-1})", R"({"type":"resume","last_event_id":1.5})",
          R"({"type":"resume","last_event_id":"1"})", R"({"type":"user_message","content":""})",
          R"({"type":"user_message","content":"x","idempotency_key":"123"})",
          R"({"type":"user_message","content":["x"],"idempotency_key":"aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"})",
          R"({"type":"user_message","content":"a\u0000b","idempotency_key":"aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"})",
          R"({"type":"auth","token":5})"}) {
        auto frame = parse_client_frame(text);
        EXPECT_EQ(frame.type, ClientFrameType::Invalid) << text;
        EXPECT_FALSE(frame.error.empty()) << text;
    }
}

TEST(Protocol, PongEchoesFieldsWithTypeFirst) {
    auto ping = parse_client_frame(R"({"type":"ping","b":2,"a":{"c":[1,"x"]}})");
    EXPECT_EQ(rws::frames::pong(ping.fields), R"({"type":"pong","b":2,"a":{"c":[1,"x"]}})");
}

// Found while writing the frame fuzz target: pings are echoed, and nlohmann
// serialises recursively, so a deep enough ping overflowed the stack.
TEST(Protocol, DeeplyNestedFramesAreRefused) {
    auto nested = [](size_t depth) {
        return R"({"type":"ping","a":)" + std::string(depth, '[') + std::string(depth, ']') + "}";
    };
    auto ping = parse_client_frame(nested(64));
    ASSERT_EQ(ping.type, ClientFrameType::Ping);
    EXPECT_EQ(rws::frames::pong(std::move(ping.fields)).size(), nested(64).size());
    EXPECT_EQ(parse_client_frame(nested(65)).type, ClientFrameType::Invalid);
    auto deep = parse_client_frame(nested(200000));
    EXPECT_EQ(deep.type, ClientFrameType::Invalid);
    EXPECT_EQ(deep.error, "frame is nested too deeply");
}

TEST(Protocol, ServerFrames) {
    EXPECT_EQ(rws::frames::ready("s", 12, true, 10000),
              R"({"type":"ready","session_id":"s","last_event_id":12,"resumed":true,"heartbeat_interval_ms":10000})");
    EXPECT_EQ(rws::frames::ack("k", 3, false),
              R"({"type":"ack","idempotency_key":"k","event_id":3,"duplicate":false})");
    EXPECT_EQ(rws::frames::replay_done(7), R"({"type":"replay_done","last_event_id":7})");
    EXPECT_EQ(rws::frames::server_restarting(1500), R"({"type":"server_restarting","retry_after_ms":1500})");
    // Strings are escaped, and invalid UTF-8 never throws.
    EXPECT_EQ(rws::frames::error("c", "a\"b\n"), R"({"type":"error","code":"c","message":"a\"b\n"})");
    EXPECT_NO_THROW(rws::frames::error("c", std::string("\xff\xfe", 2)));
}

TEST(Protocol, EventIds) {
    int64_t id = -1;
    EXPECT_TRUE(rws::parse_event_id("0", id));
    EXPECT_EQ(id, 0);
    EXPECT_TRUE(rws::parse_event_id("9223372036854775807", id));
    for (const char *bad : {"", "-1", "+1", "1.0", " 1", "1 ", "0x10", "99999999999999999999", "abc"})
        EXPECT_FALSE(rws::parse_event_id(bad, id)) << bad;
}

TEST(Uuid, RandomUuidsAreV4CanonicalAndDistinct) {
    std::set<std::string> seen;
    for (int i = 0; i < 2000; i++) {
        std::string u = rws::random_uuid(), canonical;
        ASSERT_TRUE(rws::parse_uuid(u, canonical));
        EXPECT_EQ(u, canonical);
        EXPECT_EQ(u[14], '4');
        EXPECT_NE(std::string("89ab").find(u[19]), std::string::npos);
        seen.insert(u);
    }
    EXPECT_EQ(seen.size(), 2000u);
}

TEST(Uuid, ParseRejectsNonCanonicalForms) {
    std::string out;
    for (const char *bad : {"", "0b6f3c1e8a4d4f1b9c2e7d5a6b4c3e2f", "{0b6f3c1e-8a4d-4f1b-9c2e-7d5a6b4c3e2f}",
                            "0b6f3c1e-8a4d-4f1b-9c2e-7d5a6b4c3e2g", "0b6f3c1e_8a4d-4f1b-9c2e-7d5a6b4c3e2f"})
        EXPECT_FALSE(rws::parse_uuid(bad, out)) << bad;
}

// The bulk statements send session ids as binary uuid[]: the bytes must be
// the ones Postgres would read from the text, in either case.
TEST(Uuid, BytesOfTheCanonicalForm) {
    unsigned char b[16];
    ASSERT_TRUE(rws::uuid_bytes("0B6F3C1E-8a4d-4f1b-9c2e-7d5a6b4c3e2f", b));
    const unsigned char expected[16] = {0x0b, 0x6f, 0x3c, 0x1e, 0x8a, 0x4d, 0x4f, 0x1b,
                                        0x9c, 0x2e, 0x7d, 0x5a, 0x6b, 0x4c, 0x3e, 0x2f};
    EXPECT_EQ(0, memcmp(b, expected, 16));
    for (const char *bad : {"", "0b6f3c1e8a4d4f1b9c2e7d5a6b4c3e2f", "0b6f3c1e-8a4d-4f1b-9c2e-7d5a6b4c3e2g",
                            "0b6f3c1e_8a4d-4f1b-9c2e-7d5a6b4c3e2f", "0b6f3c1e-8a4d-4f1b-9c2e-7d5a6b4c3e2"})
        EXPECT_FALSE(rws::uuid_bytes(bad, b)) << bad;
    std::string random = rws::random_uuid();
    EXPECT_TRUE(rws::uuid_bytes(random, b));
}

}  // namespace

namespace {

TEST(EventFrame, IsOneJsonObjectWithThePayloadAsStoredAndTheTypeEscaped) {
    std::string frame =
        rws::frames::event(42, "odd \"type\"\n\xff", R"({"a": [1, "x"], "b": null})", "2026-11-26T00:00:00.000Z");
    auto parsed = nlohmann::json::parse(frame);
    EXPECT_EQ(parsed["type"], "event");
    EXPECT_EQ(parsed["id"], 42);
    EXPECT_EQ(parsed["event_type"], "odd \"type\"\n\xef\xbf\xbd");  // invalid UTF-8 replaced, never thrown
    EXPECT_EQ(parsed["payload"], nlohmann::json::parse(R"({"a": [1, "x"], "b": null})"));
    EXPECT_EQ(parsed["created_at"], "2026-11-26T00:00:00.000Z");
    EXPECT_EQ(frame.rfind(R"({"type":"event","id":42,)", 0), 0u);
}

}  // namespace
