// Reading an OpenAI-compatible streaming response: Server-Sent Events framing
// (any chunking, \n or \r\n, comments, multi-line data) and the meaning of
// each chat-completion chunk. Pure C++: no Postgres, no curl; unit tested.
#pragma once

#include <string>
#include <vector>

namespace rws {

// Splits a byte stream into SSE events. Only `data:` fields matter for chat
// completions; an event's data lines are joined with "\n" (per the SSE spec).
class SseParser {
  public:
    // Appends bytes as they arrive; complete events are appended to out.
    void feed(const char *data, size_t size, std::vector<std::string> &out);
    // True while an unterminated line is buffered.
    bool partial() const { return !line_.empty() || has_data_; }

  private:
    void end_line(std::vector<std::string> &out);

    std::string line_;
    std::string data_;
    bool has_data_ = false;
    bool after_cr_ = false;  // a \r ended the last line: skip a following \n
};

// What one `data:` payload of a chat-completions stream says.
struct CompletionChunk {
    enum class Kind {
        Content,   // delta text and/or a finish_reason
        Done,      // data: [DONE]
        Error,     // {"error": …} inside the stream
        Malformed  // not JSON, or not shaped like a chunk
    } kind = Kind::Malformed;
    std::string delta;          // Content: text to append (may be empty)
    std::string finish_reason;  // Content: "stop", "length", … when the answer ended
    std::string error_type;     // Error: upstream's type/code, for the log only
};

CompletionChunk parse_completion_chunk(const std::string &data);

// The answer the echo provider streams for a user message: deterministic, and
// split into word-sized pieces whose concatenation is the answer.
std::vector<std::string> echo_answer_pieces(const std::string &user_message);

}  // namespace rws
