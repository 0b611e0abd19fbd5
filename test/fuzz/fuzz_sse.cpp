// Fuzz target: the LLM's streaming response, as curl hands it over in reads
// of any size. Input: the stream, optionally followed by 0xFF and a list of
// read sizes (one byte each, used in turn); the last 0xFF separates them, so
// the stream itself may contain 0xFF too. Property: the events are the same
// whether the stream arrives in one read, one byte at a time or in the
// fuzzer's reads; and every event's chunk is safe to store as jsonb.
#include "fuzz_check.hpp"
#include "llm_stream.hpp"

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

using rws::CompletionChunk;
using rws::SseParser;

struct Parsed {
    std::vector<std::string> events;
    bool partial;
};

template <typename NextSize>
static Parsed parse_in_reads(const char *stream, size_t size, NextSize next_size) {
    SseParser parser;
    Parsed parsed;
    for (size_t at = 0; at < size;) {
        size_t n = std::min(next_size(), size - at);
        parser.feed(stream + at, n, parsed.events);
        at += n;
    }
    parsed.partial = parser.partial();
    return parsed;
}

static void check_chunk(const std::string &event) {
    CompletionChunk chunk = rws::parse_completion_chunk(event);
    switch (chunk.kind) {
        case CompletionChunk::Kind::Content:
            // delta and finish_reason end up in jsonb payloads (assistant_delta,
            // assistant_done), which refuse NUL and invalid UTF-8.
            FUZZ_CHECK(chunk.delta.find('\0') == std::string::npos, "delta has no NUL");
            FUZZ_CHECK(fuzz::is_valid_utf8(chunk.delta), "delta is valid UTF-8");
            FUZZ_CHECK(chunk.finish_reason.find('\0') == std::string::npos, "finish_reason has no NUL");
            FUZZ_CHECK(fuzz::is_valid_utf8(chunk.finish_reason), "finish_reason is valid UTF-8");
            break;
        case CompletionChunk::Kind::Done: {
            size_t begin = event.find_first_not_of(" \t"), end = event.find_last_not_of(" \t");
            FUZZ_CHECK(begin != std::string::npos && event.substr(begin, end - begin + 1) == "[DONE]",
                       "Done only for [DONE]");
            break;
        }
        case CompletionChunk::Kind::Error:
        case CompletionChunk::Kind::Malformed:
            FUZZ_CHECK(chunk.delta.empty() && chunk.finish_reason.empty(), "no text from a non-content chunk");
            break;
    }
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *bytes = reinterpret_cast<const char *>(data);
    size_t stream_size = size;
    std::vector<size_t> reads;
    const void *separator = memrchr(bytes, 0xff, size);
    if (separator != nullptr) {
        stream_size = static_cast<const char *>(separator) - bytes;
        for (size_t i = stream_size + 1; i < size; i++) reads.push_back(static_cast<uint8_t>(bytes[i]));
    }

    Parsed whole = parse_in_reads(bytes, stream_size, [] { return SIZE_MAX; });
    Parsed bytewise = parse_in_reads(bytes, stream_size, [] { return size_t{1}; });
    FUZZ_CHECK(bytewise.events == whole.events && bytewise.partial == whole.partial,
               "one byte at a time gives the same events as one read");
    if (!reads.empty()) {
        size_t next = 0, zeros = 0;
        Parsed chosen = parse_in_reads(bytes, stream_size, [&] {
            size_t n = reads[next++ % reads.size()];
            // Empty reads are fed too; a list of only zeros ends with the rest.
            zeros = n == 0 ? zeros + 1 : 0;
            return zeros > reads.size() ? SIZE_MAX : n;
        });
        FUZZ_CHECK(chosen.events == whole.events && chosen.partial == whole.partial,
                   "the fuzzer's reads give the same events as one read");
    }

    for (const std::string &event : whole.events) check_chunk(event);
    return 0;
}
