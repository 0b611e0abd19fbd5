#include "llm_stream.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>

#include "cpp_only.hpp"  // must be last: no Postgres in this file

namespace rws {

// A line longer than this is not SSE from a chat API; it is dropped rather
// than buffered without bound.
constexpr size_t kMaxLine = 4 * 1024 * 1024;

void SseParser::feed(const char *data, size_t size, std::vector<std::string> &out) {
    for (size_t i = 0; i < size; i++) {
        char c = data[i];
        if (after_cr_) {
            after_cr_ = false;
            if (c == '\n') continue;
        }
        if (c == '\r' || c == '\n') {
            after_cr_ = c == '\r';
            end_line(out);
            continue;
        }
        if (line_.size() < kMaxLine) line_.push_back(c);
    }
}

void SseParser::end_line(std::vector<std::string> &out) {
    if (line_.empty()) {  // a blank line dispatches the event
        if (has_data_) out.push_back(std::move(data_));
        data_.clear();
        has_data_ = false;
        return;
    }
    if (line_[0] != ':') {  // ':' starts a comment (keep-alive)
        size_t colon = line_.find(':');
        std::string field = line_.substr(0, colon);
        std::string value;
        if (colon != std::string::npos) {
            value = line_.substr(colon + 1);
            if (!value.empty() && value[0] == ' ') value.erase(0, 1);
        }
        if (field == "data") {
            if (has_data_) data_.push_back('\n');
            data_ += value;
            has_data_ = true;
        }
    }
    line_.clear();
}

static std::string text_field(const nlohmann::json &object, const char *name) {
    auto it = object.find(name);
    return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

CompletionChunk parse_completion_chunk(const std::string &data) {
    CompletionChunk chunk;
    size_t begin = data.find_first_not_of(" \t");
    size_t end = data.find_last_not_of(" \t");
    if (begin != std::string::npos && data.compare(begin, end - begin + 1, "[DONE]") == 0) {
        chunk.kind = CompletionChunk::Kind::Done;
        return chunk;
    }
    // The parser rejects ill-formed UTF-8, so accepted text is valid UTF-8.
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
    // A usage-only chunk has no choices; it carries no text.
    if (choices->empty() || !(*choices)[0].is_object()) return chunk;
    const nlohmann::json &choice = (*choices)[0];
    auto delta = choice.find("delta");
    if (delta != choice.end() && delta->is_object()) chunk.delta = text_field(*delta, "content");
    chunk.finish_reason = text_field(choice, "finish_reason");
    // jsonb cannot store U+0000: drop it here so stored deltas stay exact.
    // finish_reason is stored too (assistant_done); with a NUL, every pass
    // writing generations failed and was retried forever (found by fuzzing).
    for (std::string *text : {&chunk.delta, &chunk.finish_reason})
        text->erase(std::remove(text->begin(), text->end(), '\0'), text->end());
    return chunk;
}

std::vector<std::string> echo_answer_pieces(const std::string &user_message) {
    std::string answer = "You said: \"" + user_message +
                         "\". This answer comes from the echo provider; set "
                         "resumable_ws.llm_provider = openai to talk to a model.";
    std::vector<std::string> pieces;
    size_t start = 0;
    while (start < answer.size()) {
        // A piece is a run of non-spaces plus the spaces after it.
        size_t end = answer.find(' ', start);
        end = end == std::string::npos ? answer.size() : answer.find_first_not_of(' ', end);
        if (end == std::string::npos) end = answer.size();
        pieces.push_back(answer.substr(start, end - start));
        start = end;
    }
    return pieces;
}

}  // namespace rws
