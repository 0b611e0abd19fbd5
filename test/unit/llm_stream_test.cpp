// Unit tests of SSE framing and chat-completion chunk parsing: every way a
// stream can be cut into reads must give the same events.
#include "llm_stream.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace {

using rws::CompletionChunk;
using rws::parse_completion_chunk;
using rws::SseParser;

std::vector<std::string> parse_in_pieces(const std::string &stream, size_t piece) {
    SseParser parser;
    std::vector<std::string> events;
    for (size_t i = 0; i < stream.size(); i += piece)
        parser.feed(stream.data() + i, std::min(piece, stream.size() - i), events);
    return events;
}

TEST(Sse, SameEventsWhateverTheReadBoundaries) {
    const std::string stream =
        ": keep-alive\n\n"
        "data: {\"a\":1}\n\n"
        "event: message\r\ndata: two\r\ndata: lines\r\n\r\n"
        "id: 7\ndata:no-space\n\n"
        "data: [DONE]\r\n\r\n";
    const std::vector<std::string> expected = {"{\"a\":1}", "two\nlines", "no-space", "[DONE]"};
    for (size_t piece = 1; piece <= stream.size(); piece++)
        EXPECT_EQ(parse_in_pieces(stream, piece), expected) << "reads of " << piece << " bytes";
}

TEST(Sse, CarriageReturnSplitFromItsNewlineIsOneLineEnd) {
    SseParser parser;
    std::vector<std::string> events;
    parser.feed("data: x\r", 8, events);
    parser.feed("\n", 1, events);  // the rest of "\r\n": not a blank line
    EXPECT_TRUE(events.empty());
    parser.feed("\r", 1, events);  // a blank line
    EXPECT_EQ(events, std::vector<std::string>{"x"});
    parser.feed("\ndata: y\n\n", 10, events);  // that \r's \n is not a second blank line
    EXPECT_EQ(events, (std::vector<std::string>{"x", "y"}));
    EXPECT_FALSE(parser.partial());
}

TEST(Sse, AnEventWithoutItsBlankLineWaits) {
    SseParser parser;
    std::vector<std::string> events;
    parser.feed("data: late", 10, events);
    EXPECT_TRUE(events.empty());
    EXPECT_TRUE(parser.partial());
    parser.feed("\n\n", 2, events);
    EXPECT_EQ(events, std::vector<std::string>{"late"});
}

TEST(Chunk, ContentFinishDoneAndUsage) {
    auto content = parse_completion_chunk(
        R"({"choices":[{"delta":{"role":"assistant","content":"Hé 🙂"},"finish_reason":null}]})");
    EXPECT_EQ(content.kind, CompletionChunk::Kind::Content);
    EXPECT_EQ(content.delta, "Hé 🙂");
    EXPECT_EQ(content.finish_reason, "");

    auto finish = parse_completion_chunk(R"({"choices":[{"delta":{},"finish_reason":"length"}]})");
    EXPECT_EQ(finish.kind, CompletionChunk::Kind::Content);
    EXPECT_EQ(finish.delta, "");
    EXPECT_EQ(finish.finish_reason, "length");

    EXPECT_EQ(parse_completion_chunk(" [DONE] ").kind, CompletionChunk::Kind::Done);
    auto usage = parse_completion_chunk(R"({"choices":[],"usage":{"total_tokens":3}})");
    EXPECT_EQ(usage.kind, CompletionChunk::Kind::Content);
    EXPECT_EQ(usage.delta, "");
}

TEST(Chunk, ErrorsAndGarbage) {
    auto error =
        parse_completion_chunk(R"({"error":{"message":"key sk-123 is wrong","type":"invalid_request_error"}})");
    EXPECT_EQ(error.kind, CompletionChunk::Kind::Error);
    EXPECT_EQ(error.error_type, "invalid_request_error");
    for (const char *text : {"", "{", "<html>", "[1,2]", R"({"choices":5})", R"({"object":"x"})", "\"\xff\xfe\""})
        EXPECT_EQ(parse_completion_chunk(text).kind, CompletionChunk::Kind::Malformed) << text;
    // Text with ill-formed UTF-8 is refused, not passed on.
    EXPECT_EQ(parse_completion_chunk("{\"choices\":[{\"delta\":{\"content\":\"\xc3\"}}]}").kind,
              CompletionChunk::Kind::Malformed);
}

TEST(Chunk, NulCharactersAreDropped) {
    auto chunk = parse_completion_chunk(R"({"choices":[{"delta":{"content":"a\u0000b"}}]})");
    EXPECT_EQ(chunk.delta, "ab");
    // Found by fuzzing: finish_reason goes into assistant_done's jsonb too.
    chunk = parse_completion_chunk(R"({"choices":[{"delta":{},"finish_reason":"st\u0000op"}]})");
    EXPECT_EQ(chunk.finish_reason, "stop");
}

TEST(Echo, PiecesAddUpToADeterministicAnswer) {
    auto pieces = rws::echo_answer_pieces("hello  wide   world");
    std::string joined;
    for (const auto &piece : pieces) {
        EXPECT_FALSE(piece.empty());
        joined += piece;
    }
    EXPECT_EQ(joined,
              "You said: \"hello  wide   world\". This answer comes from the echo provider; set "
              "resumable_ws.llm_provider = openai to talk to a model.");
    EXPECT_GT(pieces.size(), 10u);
    EXPECT_EQ(pieces, rws::echo_answer_pieces("hello  wide   world"));
}

}  // namespace
