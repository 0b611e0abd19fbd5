// AI generations, on the worker's Postgres thread: one per new user message,
// one at a time per session in message order, at most llm_max_concurrency at
// once. Upstream text comes from the LLM thread; each pass appends what
// arrived as events, in the pass's transaction (SessionHub::pass):
// assistant_started, one coalesced assistant_delta per generation, and
// exactly one assistant_done or assistant_error. The ws_generations table
// holds each one's state, so a restart finds the ones it cut off.
#pragma once

#include "append_batch.hpp"
#include "connection.hpp"
#include "database.hpp"
#include "llm_client.hpp"
#include "metrics.hpp"

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace rws {

class Generations {
  public:
    Generations(Database &db, LlmClient &llm);
    ~Generations();

    // Worker start: generations a crash or restart cut off end as
    // interrupted; queued ones are queued again. Returns false on failure.
    bool recover();
    // A committed user message's generation (its ws_generations row
    // exists); returns its handle.
    uint64_t enqueue(const std::string &session_id, int64_t reply_to, const std::string &message_id);
    // A client's cancel: stops the session's current generation.
    void cancel(const std::string &session_id);
    // The session may have been closed: its generations stop.
    void session_may_be_closed(const std::string &session_id);
    void all_sessions_may_be_closed();
    // Shutdown: running generations end as interrupted (written by the next
    // pass); the LLM thread is stopped, so no upstream is waited on.
    void interrupt_all();

    // A pass, in three steps. prepare(): reads the LLM thread's output and
    // chooses what may start; true if there is something to write.
    bool prepare();
    // Inside the pass's transaction: locks the sessions concerned and
    // appends their events to appends (written by its flush()).
    void write(EventLog &log, AppendBatch &appends);
    // After the transaction: applies what write() planned if it committed,
    // else tries again on a later pass.
    void committed(bool ok);
    // Milliseconds until pass() has work again (-1: none).
    int idle_timeout_ms() const;
    size_t running_count() const { return running_; }
    // Generations waiting for a free upstream slot (or their session's turn).
    size_t queued_count() const { return generations_.size() - running_; }

  private:
    struct End {
        bool error = false;
        std::string reason;   // finish_reason, or the error code
        std::string message;  // error only
    };
    struct Generation {
        uint64_t id = 0;
        std::string session_id;
        int64_t reply_to = 0;
        std::string message_id;
        bool started = false;  // assistant_started committed, upstream running
        bool cancel_requested = false;
        bool has_end = false;  // the answer is over; not yet written
        End end;
        std::string content;                 // text written as deltas so far
        size_t content_json_size = 0;        // content's size as a JSON string
        std::string pending;                 // text received, not yet written
        Clock::time_point delta_written_at;  // of its last assistant_delta (epoch: none yet)
        Clock::time_point submitted_at;      // upstream request made
        bool got_first_text = false;
    };
    struct Plan;

    void apply_updates();
    // Its pending text may be written as a delta now (kDeltaInterval).
    static bool delta_due(const Generation &g, Clock::time_point now);
    // history: the conversation up to the message answered, newest first.
    LlmRequest build_request(const Generation &g, const std::vector<ContextMessage> &history);
    void remove(uint64_t id);

    Database &db_;
    LlmClient &llm_;
    std::unique_ptr<Plan> plan_;   // write() → committed()
    std::set<uint64_t> to_start_;  // chosen by prepare()
    Clock::time_point pass_time_;  // prepare()'s: which deltas are due

    uint64_t next_id_ = 1;
    std::map<uint64_t, Generation> generations_;                         // by id: enqueue order
    std::unordered_map<std::string, std::vector<uint64_t>> by_session_;  // in order
    std::unordered_set<std::string> check_status_;                       // sessions to re-read
    size_t running_ = 0;                                                 // started, not yet removed
    bool may_start_ = false;                                             // a slot or a session's turn may have freed
    bool work_pending_ = false;                                          // something to write or check
    bool shutting_down_ = false;                                         // start nothing more
    bool retry_soon_ = false;                                            // a session was locked by another transaction
    bool failing_ = false;                                               // last write failed: back off
    std::vector<LlmUpdate> updates_;
};

}  // namespace rws
