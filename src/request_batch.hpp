// The requests of a pass, run in the pass's transaction: sessions opened,
// user messages appended (through the pass's AppendBatch), cursors moved,
// connection rows removed. Nothing is said to a client before the commit:
// handle() records an Answer per request, which the hub applies afterwards.
#pragma once

#include "append_batch.hpp"
#include "event_log.hpp"

#include <string>
#include <unordered_set>
#include <vector>

namespace rws {

struct Request {
    enum class Kind { Open, UserMessage, Resume, Detach } kind;
    uint64_t conn_id = 0;
    std::string session_id;       // UserMessage, Resume; Open: the requested one (may be empty)
    std::string user_id;          // Open
    std::string remote_addr;      // Open
    std::string live_row_id;      // Detach
    std::string content;          // UserMessage
    std::string idempotency_key;  // UserMessage
    int64_t last_event_id = 0;    // Resume
};

// What a request's connection is told once the transaction has committed.
struct Answer {
    enum class Kind {
        Opened,   // session_id, live_row_id, head (read at open), resumed
        Refused,  // the open failed: code, message, close_code, refusal (metrics)
        Acked,    // key, event_id, duplicate; new: session_id, message_id (its generation, if any)
        Error,    // an error frame: code, message
        Close,    // close_code, message
        Rewound,  // resume: cursor, head
    } kind;
    uint64_t conn_id = 0;
    std::string session_id, live_row_id, key, message_id, code, message;
    int64_t head = 0, event_id = 0, cursor = 0;
    bool resumed = false, duplicate = false;
    int close_code = 0, refusal = 0;
};

class RequestBatch {
  public:
    explicit RequestBatch(int worker_pid) : worker_pid_(worker_pid) {}

    // Inside the transaction. A session one request had to wait for (another
    // transaction holds it) keeps its later requests waiting too, in order.
    void handle(EventLog &log, AppendBatch &appends, const std::vector<Request> &requests);
    // The answer to a request that failed when run alone.
    static Answer failure(const Request &request);

    std::vector<Answer> answers;
    std::vector<Request> deferred;  // to run on a later pass, in order
    std::unordered_set<std::string> deferred_sessions;
    size_t appended = 0;  // user messages

  private:
    void handle_open(EventLog &log, const Request &request);
    void handle_user_message(AppendBatch &appends, const Request &request, const std::vector<FoundKey> &found,
                             size_t lookup);
    void handle_resume(EventLog &log, const Request &request);

    int worker_pid_;
};

}  // namespace rws
