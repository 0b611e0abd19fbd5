#include "llm_stream.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>

#include "cpp_only.hpp"  // must be last: no Postgres in this file

namespace rws {

// A line longer than this is not SSE from a chat API; it is dropped rather
// than buffered without bound.
constexpr size_t kMaxLine = 4 * 1024 * 1024;

void SseParser::feed(const char *data, size_t size, std::vector<std::string> &out) {
    size_t i = 0;
    while (i < size) {
        if (after_cr_) {
            after_cr_ = false;
            if (data[i] == '\n') {
                i++;
                continue;
            }
        }
        // The rest of the line at once (a chunk per token: this is the
        // thread's inner loop).
        size_t end = i;
        while (end < size && data[end] != '\r' && data[end] != '\n') end++;
        line_.append(data + i, std::min(end - i, kMaxLine - std::min(kMaxLine, line_.size())));
        if (end == size) break;
        after_cr_ = data[end] == '\r';
        end_line(out);
        i = end + 1;
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
        if (line_.compare(0, colon, "data") == 0) {
            size_t value = colon == std::string::npos ? line_.size() : colon + 1;
            if (value < line_.size() && line_[value] == ' ') value++;
            if (has_data_) data_.push_back('\n');
            data_.append(line_, value, std::string::npos);
            has_data_ = true;
        }
    }
    line_.clear();
}

namespace {

// Reads a chat-completion chunk in one pass over its text, keeping only what
// parse_completion_chunk needs (error, choices[0].delta.content,
// choices[0].finish_reason): a chunk comes per token, and building the whole
// document cost more than everything else the LLM thread does per token.
// Semantics are those of a parsed document: a repeated key counts by its
// last value, and a field of the wrong type counts as absent.
class ChunkReader : public nlohmann::json_sax<nlohmann::json> {
  public:
    using json = nlohmann::json;
    // What the document says, as a parsed document would.
    bool root_is_object = false;
    bool has_error = false;  // "error" present and not null
    std::string error_type, error_code;
    bool choices_is_array = false;
    bool choice_is_object = false;  // choices[0]
    std::string content, finish_reason;

    bool null() override { return value(Kind::Null); }
    bool boolean(bool) override { return value(Kind::Other); }
    bool number_integer(number_integer_t) override { return value(Kind::Other); }
    bool number_unsigned(number_unsigned_t) override { return value(Kind::Other); }
    bool number_float(number_float_t, const string_t &) override { return value(Kind::Other); }
    bool binary(binary_t &) override { return value(Kind::Other); }
    bool string(string_t &text) override {
        Role role = role_of_value();
        switch (role) {
            case Role::ErrorType: error_type = std::move(text); break;
            case Role::ErrorCode: error_code = std::move(text); break;
            case Role::Content: content = std::move(text); break;
            case Role::FinishReason: finish_reason = std::move(text); break;
            default: break;
        }
        return value(Kind::String, role);
    }
    bool start_object(std::size_t) override { return open(false); }
    bool start_array(std::size_t) override { return open(true); }
    bool end_object() override { return close(); }
    bool end_array() override { return close(); }
    bool key(string_t &name) override {
        stack_.back().key = std::move(name);
        return true;
    }
    bool parse_error(std::size_t, const std::string &, const nlohmann::detail::exception &) override { return false; }

  private:
    enum class Kind { Null, String, Object, Array, Other };
    enum class Role { None, Root, Error, ErrorType, ErrorCode, Choices, Choice, Delta, Content, FinishReason };
    struct Frame {
        bool array;
        Role role;
        size_t elements = 0;  // arrays: values seen so far
        std::string key;      // objects: the key whose value comes next
    };

    // The role of the value about to start, from where it is.
    Role role_of_value() const {
        if (stack_.empty()) return Role::Root;
        const Frame &at = stack_.back();
        switch (at.role) {
            case Role::Root:
                if (at.key == "error") return Role::Error;
                if (at.key == "choices") return Role::Choices;
                return Role::None;
            case Role::Error:
                if (at.key == "type") return Role::ErrorType;
                if (at.key == "code") return Role::ErrorCode;
                return Role::None;
            case Role::Choices: return at.elements == 0 ? Role::Choice : Role::None;
            case Role::Choice:
                if (at.key == "delta") return Role::Delta;
                if (at.key == "finish_reason") return Role::FinishReason;
                return Role::None;
            case Role::Delta: return at.key == "content" ? Role::Content : Role::None;
            default: return Role::None;
        }
    }

    // A value of this kind starts in this role: what it replaces is reset
    // (the last of repeated keys counts, and a wrong type means absent).
    void begin(Kind kind, Role role) {
        switch (role) {
            case Role::Root: root_is_object = kind == Kind::Object; break;
            case Role::Error:
                has_error = kind != Kind::Null;
                error_type.clear();
                error_code.clear();
                break;
            case Role::ErrorType:
                if (kind != Kind::String) error_type.clear();
                break;
            case Role::ErrorCode:
                if (kind != Kind::String) error_code.clear();
                break;
            case Role::Choices:
                choices_is_array = kind == Kind::Array;
                choice_is_object = false;
                content.clear();
                finish_reason.clear();
                break;
            case Role::Choice:
                choice_is_object = kind == Kind::Object;
                content.clear();
                finish_reason.clear();
                break;
            case Role::Delta: content.clear(); break;
            case Role::Content:
                if (kind != Kind::String) content.clear();
                break;
            case Role::FinishReason:
                if (kind != Kind::String) finish_reason.clear();
                break;
            case Role::None: break;
        }
        if (!stack_.empty() && stack_.back().array) stack_.back().elements++;
    }

    bool value(Kind kind, Role role) {
        begin(kind, role);
        return true;
    }
    bool value(Kind kind) { return value(kind, role_of_value()); }

    bool open(bool array) {
        Role role = role_of_value();
        begin(array ? Kind::Array : Kind::Object, role);
        // Only containers on the path to a field keep their role.
        bool on_path = array ? role == Role::Choices
                             : role == Role::Root || role == Role::Error || role == Role::Choice || role == Role::Delta;
        stack_.push_back(Frame{array, on_path ? role : Role::None, 0, {}});
        return true;
    }
    bool close() {
        stack_.pop_back();
        return true;
    }

    std::vector<Frame> stack_;
};

}  // namespace

CompletionChunk parse_completion_chunk(const std::string &data) {
    CompletionChunk chunk;
    size_t begin = data.find_first_not_of(" \t");
    size_t end = data.find_last_not_of(" \t");
    if (begin != std::string::npos && data.compare(begin, end - begin + 1, "[DONE]") == 0) {
        chunk.kind = CompletionChunk::Kind::Done;
        return chunk;
    }
    // The parser rejects ill-formed UTF-8, so accepted text is valid UTF-8.
    ChunkReader reader;
    if (!nlohmann::json::sax_parse(data, &reader, nlohmann::detail::input_format_t::json, true, false) ||
        !reader.root_is_object)
        return chunk;

    if (reader.has_error) {
        chunk.kind = CompletionChunk::Kind::Error;
        chunk.error_type = reader.error_type.empty() ? reader.error_code : reader.error_type;
        return chunk;
    }
    if (!reader.choices_is_array) return chunk;
    chunk.kind = CompletionChunk::Kind::Content;
    // A usage-only chunk has no choices; it carries no text.
    if (!reader.choice_is_object) return chunk;
    chunk.delta = std::move(reader.content);
    chunk.finish_reason = std::move(reader.finish_reason);
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
