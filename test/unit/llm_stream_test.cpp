// Unit tests of SSE framing and chat-completion chunk parsing: every way a
// stream can be cut into reads must give the same events.
#include "llm_stream.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <functional>
#include <random>
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

// The reference: what a chunk means, read through a whole parsed document
// (how parse_completion_chunk worked before it read the text in one pass).
CompletionChunk parse_as_document(const std::string &data) {
    auto text_field = [](const nlohmann::json &object, const char *name) {
        auto it = object.find(name);
        return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    CompletionChunk chunk;
    size_t begin = data.find_first_not_of(" \t");
    size_t end = data.find_last_not_of(" \t");
    if (begin != std::string::npos && data.compare(begin, end - begin + 1, "[DONE]") == 0) {
        chunk.kind = CompletionChunk::Kind::Done;
        return chunk;
    }
    nlohmann::json json = nlohmann::json::parse(data, nullptr, false);
    if (json.is_discarded() || !json.is_object()) return chunk;
    auto error = json.find("error");
    if (error != json.end() && !error->is_null()) {
        chunk.kind = CompletionChunk::Kind::Error;
        if (error->is_object()) {
            chunk.error_type = text_field(*error, "type");
            if (chunk.error_type.empty()) chunk.error_type = text_field(*error, "code");
        }
        return chunk;
    }
    auto choices = json.find("choices");
    if (choices == json.end() || !choices->is_array()) return chunk;
    chunk.kind = CompletionChunk::Kind::Content;
    if (choices->empty() || !(*choices)[0].is_object()) return chunk;
    const nlohmann::json &choice = (*choices)[0];
    auto delta = choice.find("delta");
    if (delta != choice.end() && delta->is_object()) chunk.delta = text_field(*delta, "content");
    chunk.finish_reason = text_field(choice, "finish_reason");
    for (std::string *text : {&chunk.delta, &chunk.finish_reason})
        text->erase(std::remove(text->begin(), text->end(), '\0'), text->end());
    return chunk;
}

void expect_same_as_document(const std::string &text) {
    CompletionChunk fast = parse_completion_chunk(text), reference = parse_as_document(text);
    EXPECT_EQ(static_cast<int>(fast.kind), static_cast<int>(reference.kind)) << text;
    EXPECT_EQ(fast.delta, reference.delta) << text;
    EXPECT_EQ(fast.finish_reason, reference.finish_reason) << text;
    EXPECT_EQ(fast.error_type, reference.error_type) << text;
}

// Repeated keys, wrong types, nesting where fields are not, and the order of
// keys: the one-pass reader must mean what the document means.
TEST(Chunk, OnePassReadingMeansWhatTheDocumentMeans) {
    const char *cases[] = {
        R"({"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hi"},"logprobs":null,"finish_reason":null}]})",
        R"({"choices":[{"delta":{"content":"a"}},{"delta":{"content":"b"}}]})",
        R"({"choices":[{"delta":{"content":"a","content":"b"}}]})",
        R"({"choices":[{"delta":{"content":"a","content":5}}]})",
        R"({"choices":[{"delta":{"content":"a"},"delta":{}}]})",
        R"({"choices":[{"delta":{"content":"a"}}],"choices":[]})",
        R"({"choices":[],"choices":[{"delta":{"content":"z"},"finish_reason":"stop"}]})",
        R"({"choices":[{"finish_reason":"stop","finish_reason":null}]})",
        R"({"choices":[{"delta":"text"}]})",
        R"({"choices":[{"delta":["content","x"]}]})",
        R"({"choices":[{"delta":{"x":{"content":"deep"}}}]})",
        R"({"choices":[[{"delta":{"content":"in an array"}}]]})",
        R"({"choices":[5,{"delta":{"content":"second"}}]})",
        R"({"x":{"choices":[{"delta":{"content":"nested"}}]},"choices":[]})",
        R"({"error":null,"choices":[{"delta":{"content":"ok"}}]})",
        R"({"error":{"type":"t"},"error":null,"choices":[]})",
        R"({"error":null,"error":{"code":"c"}})",
        R"({"error":{"type":5,"code":"c"}})",
        R"({"error":{"type":"t","code":"c"}})",
        R"({"error":{"type":{"type":"inner"}}})",
        R"({"error":"just text"})",
        R"({"error":[{"type":"t"}]})",
        R"({"error":false})",
        R"({"choices":{"0":{"delta":{"content":"object, not array"}}}})",
        R"([{"choices":[]}])",
        R"("text")",
        R"({"choices":[{"delta":{"content":"\u00e9\ud83d\ude00"}}]})",
        R"({"choices":[{"delta":{"content":"a"}}]} trailing)",
        R"({"choices":[{"delta":{"content":"a"}})",
        R"(  [DONE]  )",
        R"({"choices":[{"delta":{"content":""},"finish_reason":"length"}],"usage":{"completion_tokens":3}})",
    };
    for (const char *text : cases) expect_same_as_document(text);
}

// The same on documents made of random pieces of chunk shapes.
TEST(Chunk, OnePassReadingMeansWhatTheDocumentMeansOnRandomDocuments) {
    const std::vector<std::string> keys = {"\"choices\"", "\"delta\"", "\"content\"", "\"finish_reason\"",
                                           "\"error\"",   "\"type\"",  "\"code\"",    "\"x\""};
    std::mt19937 random(12345);
    auto pick = [&random](size_t n) { return static_cast<size_t>(random() % n); };
    std::function<std::string(int)> value = [&](int depth) -> std::string {
        switch (depth > 3 ? pick(4) : pick(7)) {
            case 0: return "null";
            case 1: return "\"s" + std::to_string(pick(3)) + "\"";
            case 2: return std::to_string(pick(10));
            case 3: return pick(2) ? "true" : "false";
            case 4: {
                std::string out = "[";
                for (size_t i = 0, n = pick(3); i < n; i++) out += (i ? "," : "") + value(depth + 1);
                return out + "]";
            }
            default: {
                std::string out = "{";
                for (size_t i = 0, n = pick(4); i < n; i++)
                    out += (i ? "," : "") + keys[pick(keys.size())] + ":" + value(depth + 1);
                return out + "}";
            }
        }
    };
    for (int i = 0; i < 20000; i++) expect_same_as_document(value(0));
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
