// Every SQL statement the worker runs, as prepared, parameterised plans over
// the resumable_ws tables. Call inside a transaction with SPI connected (see
// Transaction in worker.cpp); a Postgres ERROR comes back as PgError.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace rws {

struct SessionRow {
    bool found = false;
    std::string user_id;
    bool active = false;
    int64_t last_event_id = 0;
};

struct EventRow {
    size_t cursor;  // read_events: index of the cursor it was read for
    int64_t id;
    std::shared_ptr<const std::string> frame;  // the complete {"type":"event",…} frame
};

// What the worker appends, written in bulk: one statement per kind of change
// per pass (AppendBatch).
struct NewEvent {
    std::string session_id;
    int64_t id;
    const char *event_type;  // a static string
    std::string payload_json;
};
struct SessionHead {
    std::string session_id;
    int64_t last_event_id;
};
struct NewIdempotencyKey {
    std::string session_id;
    std::string key;
    int64_t event_id;
};
struct NewGeneration {
    std::string session_id;
    int64_t reply_to;
    std::string message_id;
};
struct GenerationStatus {
    std::string session_id;
    int64_t reply_to;
    std::string status;  // queued, running, done, error, skipped
};
struct LockedSession {
    std::string session_id;
    bool active = false;
    int64_t last_event_id = 0;
};
struct KeyLookup {
    std::string session_id;
    std::string key;
};
struct FoundKey {
    size_t lookup;  // index into the lookups
    int64_t event_id;
    std::string content;  // of the message it names
};
struct OpenGeneration {
    std::string session_id;
    int64_t reply_to;
    std::string message_id;
    bool running;  // else queued
};
struct ContextLookup {
    std::string session_id;
    int64_t upto;
};
struct ContextMessage {
    bool from_user;  // user_message, else assistant_done
    std::string content;
};

class EventLog {
  public:
    struct Param;  // a statement's parameter (event_log.cpp)

    bool extension_installed();
    // Every row but those of these (live) workers' connections.
    void clear_live_connections(const std::vector<int> &keep_worker_pids);

    SessionRow get_session(const std::string &session_id);
    std::string create_session(const std::string &user_id);
    std::string add_live_connection(const std::string &session_id, const std::string &user_id, int worker_pid,
                                    const std::string &remote_addr);
    void remove_live_connection(const std::string &connection_id);
    // last_seen_at = now() for these ws_live_connections rows.
    void touch_live_connections(const std::vector<std::string> &connection_ids);

    // Locks those sessions that no other transaction holds, without waiting.
    std::vector<LockedSession> lock_sessions(const std::vector<std::string> &session_ids);
    std::vector<std::string> existing_sessions(const std::vector<std::string> &session_ids);
    // The events these idempotency keys produced, with their messages' content.
    std::vector<FoundKey> find_idempotency_keys(const std::vector<KeyLookup> &lookups);
    void append_events(const std::vector<NewEvent> &events);
    void insert_idempotency_keys(const std::vector<NewIdempotencyKey> &keys);
    void insert_generations(const std::vector<NewGeneration> &generations);
    // Returns the created_at of this transaction's events, as read_events
    // formats it (the column's default is the transaction's start).
    std::string set_heads(const std::vector<SessionHead> &heads);
    void set_generation_statuses(const std::vector<GenerationStatus> &statuses);
    // The queued and running generations of these sessions, by session and
    // message order.
    std::vector<OpenGeneration> open_generations(const std::vector<std::string> &session_ids);
    std::vector<std::string> sessions_with_open_generations();
    // For each lookup, the newest (at most limit) user and assistant
    // messages of its session up to and including event upto, newest first.
    std::vector<std::vector<ContextMessage>> load_contexts(const std::vector<ContextLookup> &lookups, int limit);

    struct Cursor {
        std::string session_id;
        int64_t after;
    };
    // Up to limit events after each cursor, in one statement: by cursor, then id.
    std::vector<EventRow> read_events(const std::vector<Cursor> &cursors, int limit);
    // A statement that reaches the database; true on a hot standby.
    bool ping_database();

  private:
    enum Statement {
        kExtensionInstalled,
        kClearLiveConnections,
        kGetSession,
        kCreateSession,
        kAddLiveConnection,
        kRemoveLiveConnection,
        kTouchLiveConnections,
        kLockSessions,
        kExistingSessions,
        kFindIdempotencyKeys,
        kAppendEvents,
        kInsertIdempotencyKeys,
        kInsertGenerations,
        kSetHeads,
        kSetGenerationStatuses,
        kOpenGenerations,
        kSessionsWithOpenGenerations,
        kLoadContexts,
        kReadSessionEvents,
        kReadEvents,
        kPing,
        kStatementCount
    };
    using Rows = std::vector<std::vector<std::string>>;
    // Runs a statement with these parameters; returns every column of every
    // row as text (NULL as empty).
    Rows run(Statement statement, const std::vector<Param> &params);
    // The same with text arguments only (nullptr is NULL).
    Rows run(Statement statement, std::initializer_list<const char *> args);

    void *plans_[kStatementCount] = {};
};

}  // namespace rws
