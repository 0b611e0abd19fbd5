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
    int64_t id;
    std::string frame;  // the complete {"type":"event",…} frame
};

enum class LockResult { Locked, Busy, Missing };

class EventLog {
  public:
    bool extension_installed();
    void clear_live_connections();

    SessionRow get_session(const std::string &session_id);
    std::string create_session(const std::string &user_id);
    std::string add_live_connection(const std::string &session_id, const std::string &user_id,
                                    int worker_pid, const std::string &remote_addr);
    void remove_live_connection(const std::string &connection_id);

    // Takes the session row lock without waiting: Busy if another
    // transaction holds it. On Locked, last_event_id and active are set.
    LockResult lock_session(const std::string &session_id, int64_t &last_event_id, bool &active);
    // The event an idempotency key produced, with that message's content.
    bool find_idempotency_key(const std::string &session_id, const std::string &key,
                              int64_t &event_id, std::string &content);
    void insert_event(const std::string &session_id, int64_t id, const std::string &event_type,
                      const std::string &payload_json);
    void insert_idempotency_key(const std::string &session_id, const std::string &key, int64_t event_id);
    void set_last_event_id(const std::string &session_id, int64_t last_event_id);

    std::vector<EventRow> read_events(const std::string &session_id, int64_t after, int limit);
    void ping_database();

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
        kReadEvents,
        kPing,
        kStatementCount
    };
    using Rows = std::vector<std::vector<std::string>>;
    // Runs a statement with text arguments (nullptr is NULL); returns every
    // column of every row as text (NULL as empty).
    Rows run(Statement statement, std::initializer_list<const char *> args);

    void *plans_[kStatementCount] = {};
};

}  // namespace rws
