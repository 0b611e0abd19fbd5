// Every SQL statement the worker runs, as prepared, parameterised plans over
// the resumable_ws tables. Call inside a transaction with SPI connected (see
// Transaction in worker.cpp); a Postgres ERROR comes back as PgError.
#pragma once

#include <cstdint>
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
    std::string frame;  // the complete {"type":"event",…} frame
};

enum class LockResult { Locked, Busy, Missing };

// Generations write in bulk: one statement per kind of change per pass.
struct NewEvent {
    std::string session_id;
    int64_t id;
    std::string event_type;
    std::string payload_json;
};
struct SessionHead {
    std::string session_id;
    int64_t last_event_id;
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
struct OpenGeneration {
    std::string session_id;
    int64_t reply_to;
    std::string message_id;
    bool running;  // else queued
};
struct ContextMessage {
    bool from_user;  // user_message, else assistant_done
    std::string content;
};

class EventLog {
  public:
    bool extension_installed();
    void clear_live_connections();

    SessionRow get_session(const std::string &session_id);
    std::string create_session(const std::string &user_id);
    std::string add_live_connection(const std::string &session_id, const std::string &user_id, int worker_pid,
                                    const std::string &remote_addr);
    void remove_live_connection(const std::string &connection_id);
    // last_seen_at = now() for these ws_live_connections rows.
    void touch_live_connections(const std::vector<std::string> &connection_ids);

    // Takes the session row lock without waiting: Busy if another
    // transaction holds it. On Locked, last_event_id and active are set.
    LockResult lock_session(const std::string &session_id, int64_t &last_event_id, bool &active);
    // The event an idempotency key produced, with that message's content.
    bool find_idempotency_key(const std::string &session_id, const std::string &key, int64_t &event_id,
                              std::string &content);
    void insert_event(const std::string &session_id, int64_t id, const std::string &event_type,
                      const std::string &payload_json);
    void insert_idempotency_key(const std::string &session_id, const std::string &key, int64_t event_id);
    void set_last_event_id(const std::string &session_id, int64_t last_event_id);

    // Generations (see generations.hpp).
    void insert_generation(const std::string &session_id, int64_t reply_to, const std::string &message_id);
    // Locks those sessions that no other transaction holds.
    std::vector<LockedSession> lock_sessions(const std::vector<std::string> &session_ids);
    std::vector<std::string> existing_sessions(const std::vector<std::string> &session_ids);
    void append_events(const std::vector<NewEvent> &events);
    void set_heads(const std::vector<SessionHead> &heads);
    void set_generation_statuses(const std::vector<GenerationStatus> &statuses);
    std::vector<OpenGeneration> open_generations();
    // The newest user and assistant messages up to and including event upto.
    std::vector<ContextMessage> load_context(const std::string &session_id, int64_t upto, int limit);

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
        kLockSession,
        kFindIdempotencyKey,
        kInsertEvent,
        kInsertIdempotencyKey,
        kSetLastEventId,
        kReadSessionEvents,
        kReadEvents,
        kPing,
        kInsertGeneration,
        kLockSessions,
        kExistingSessions,
        kAppendEvents,
        kSetHeads,
        kSetGenerationStatuses,
        kOpenGenerations,
        kLoadContext,
        kTouchLiveConnections,
        kStatementCount
    };
    using Rows = std::vector<std::vector<std::string>>;
    // Runs a statement with text arguments (nullptr is NULL); returns every
    // column of every row as text (NULL as empty).
    Rows run(Statement statement, std::initializer_list<const char *> args);

    void *plans_[kStatementCount] = {};
};

}  // namespace rws
