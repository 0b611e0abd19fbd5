// AI generations, on the worker's Postgres thread: one per new user message,
// one at a time per session in message order, at most llm_max_concurrency at
// once. Upstream text comes from the LLM thread; each pass appends what
// arrived as events, in the pass's transaction (SessionHub::pass):
// assistant_started, one coalesced assistant_delta per generation, and
// exactly one assistant_done or assistant_error. The ws_generations table
// holds each one's state, so a restart finds the ones it cut off.
//
// With several workers, a session's generations run in the worker that
// holds its owner lock (session_owner.hpp). Generations enter memory only
// from that table, read under the lock: a worker that commits a message
// claims the session (takes the lock if it is free, then reads); a worker
// that finds it taken leaves the generation to the owner, which its commit
// woke and which reads again. An owner with nothing left releases the lock
// and then looks once more, so that no generation waits unowned.
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

    // Worker start: every session with open generations is claimed; those
    // no live worker owns are this one's, and what a crash or restart cut
    // off ends as interrupted. Returns false on failure.
    bool recover();
    // This worker committed a user message with a generation (its
    // ws_generations row exists): the session is claimed on the next pass.
    void message_committed(const std::string &session_id);
    // Another worker or publish() changed the session: if this worker owns
    // it, its generations are read again (a message may have come).
    void session_woken(const std::string &session_id);
    void all_sessions_woken();
    // A client's cancel: stops the session's current generation, here or,
    // through shared memory, in the worker that runs it.
    void cancel(const std::string &session_id);
    // A cancel another worker forwarded: acted on if this worker runs it.
    void cancel_forwarded(const std::string &session_id);
    // The session may have been closed: its generations stop.
    void session_may_be_closed(const std::string &session_id);
    void all_sessions_may_be_closed();
    // Shutdown: running generations end as interrupted (written by the next
    // pass); the LLM thread is stopped, so no upstream is waited on.
    void interrupt_all();

    // A pass, in three steps. prepare(): reads the LLM thread's output;
    // true if there is something to write.
    bool prepare();
    // Inside the pass's transaction: settles which sessions this worker
    // owns and reads their generations, chooses what may start, locks the
    // sessions concerned and appends their events to appends (written by
    // its flush()).
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
    // write()'s first step: owner locks released, taken, and the
    // generations of owned sessions read (OwnerLock, session_owner.hpp).
    void sync_ownership(EventLog &log);
    // A generation read from the table, unless already in memory.
    void adopt(const OpenGeneration &row);
    // Heads of sessions, oldest message first, take the free slots
    // (llm_max_concurrency across every worker).
    void choose_starts();
    bool has_startable_head() const;
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

    // Ownership (see the top of this file).
    std::unordered_set<std::string> owned_;                        // owner lock held
    std::unordered_set<std::string> to_claim_;                     // read their generations, taking the lock if free
    std::unordered_set<std::string> to_release_;                   // owned, nothing left to run
    std::unordered_set<std::string> to_recheck_;                   // released: read once more
    std::unordered_set<std::string> cancel_when_claimed_;          // cancelled before their generations were read
    std::unordered_map<std::string, uint32_t> forwarded_cancels_;  // to the workers whose bits are set
};

}  // namespace rws
