#include "event_log.hpp"

#include "event_frame.hpp"
#include "pg.hpp"

extern "C" {
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
}

#include <string>

namespace rws {

struct StatementText {
    const char *sql;
    int nargs;
};

// Every statement runs as a superuser in a database other roles can write
// to: the worker's search_path is pinned to pg_catalog, pg_temp (worker.cpp),
// and every table and function here is qualified besides, so no object of
// another role can stand in for ours or pg_catalog's. (Operators and type
// names resolve in pg_catalog, the only schema in that path.)
//
// Event rows are read as id, event_type, payload (jsonb's text, sent as is)
// and created_at; the frame around them is built in C++ (frames::event),
// which costs less than a JSON function per row here.
#define EVENT_COLUMNS_SQL             \
    "e.event_type, e.payload::text, " \
    "pg_catalog.to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') "
static const StatementText kStatements[] = {
    /* kExtensionInstalled */
    {"SELECT pg_catalog.count(*) FROM pg_catalog.pg_extension WHERE extname = 'resumable_ws'", 0},
    /* kClearLiveConnections */
    {"DELETE FROM resumable_ws.ws_live_connections", 0},
    /* kGetSession */
    {"SELECT user_id::text, status, last_event_id::text FROM resumable_ws.ws_sessions "
     "WHERE id = $1::uuid",
     1},
    /* kCreateSession */
    {"INSERT INTO resumable_ws.ws_sessions (user_id) VALUES ($1::uuid) RETURNING id::text", 1},
    /* kAddLiveConnection */
    {"INSERT INTO resumable_ws.ws_live_connections (session_id, user_id, worker_pid, remote_addr) "
     "VALUES ($1::uuid, $2::uuid, $3::integer, $4) RETURNING connection_id::text",
     4},
    /* kRemoveLiveConnection */
    {"DELETE FROM resumable_ws.ws_live_connections WHERE connection_id = $1::uuid", 1},
    /* kLockSession */
    {"SELECT status, last_event_id::text FROM resumable_ws.ws_sessions "
     "WHERE id = $1::uuid FOR UPDATE SKIP LOCKED",
     1},
    /* kFindIdempotencyKey */
    {"SELECT k.event_id::text, coalesce(e.payload->>'content', '') "
     "FROM resumable_ws.ws_idempotency_keys k "
     "JOIN resumable_ws.ws_events e ON e.session_id = k.session_id AND e.id = k.event_id "
     "WHERE k.session_id = $1::uuid AND k.idempotency_key = $2::uuid",
     2},
    /* kInsertEvent */
    {"INSERT INTO resumable_ws.ws_events (session_id, id, event_type, payload) "
     "VALUES ($1::uuid, $2::bigint, $3, $4::jsonb)",
     4},
    /* kInsertIdempotencyKey */
    {"INSERT INTO resumable_ws.ws_idempotency_keys (session_id, idempotency_key, event_id) "
     "VALUES ($1::uuid, $2::uuid, $3::bigint)",
     3},
    /* kSetLastEventId */
    {"UPDATE resumable_ws.ws_sessions SET last_event_id = $2::bigint, updated_at = pg_catalog.now() "
     "WHERE id = $1::uuid",
     2},
    /* kReadSessionEvents */
    {"SELECT '0', e.id::text, " EVENT_COLUMNS_SQL
     "FROM resumable_ws.ws_events e WHERE e.session_id = $1::uuid AND e.id > $2::bigint "
     "ORDER BY e.id LIMIT $3::integer",  // e.id: the bigint, not the text output column
     3},
    /* kReadEvents */
    {"SELECT (c.n - 1)::text, e.id::text, " EVENT_COLUMNS_SQL
     "FROM ROWS FROM (pg_catalog.unnest($1::uuid[]), pg_catalog.unnest($2::bigint[])) "
     "WITH ORDINALITY AS c(session_id, after_id, n) "
     "CROSS JOIN LATERAL (SELECT * FROM resumable_ws.ws_events e "
     "WHERE e.session_id = c.session_id AND e.id > c.after_id "
     "ORDER BY e.id LIMIT $3::integer) e "
     "ORDER BY c.n, e.id",  // e.id: the bigint, not the text output column
     3},
    /* kPing */
    {"SELECT pg_catalog.pg_is_in_recovery()", 0},
    /* kInsertGeneration */
    {"INSERT INTO resumable_ws.ws_generations (session_id, reply_to, message_id) "
     "VALUES ($1::uuid, $2::bigint, $3::uuid)",
     3},
    /* kLockSessions */
    {"SELECT id::text, status, last_event_id::text FROM resumable_ws.ws_sessions "
     "WHERE id = ANY ($1::uuid[]) FOR UPDATE SKIP LOCKED",
     1},
    /* kExistingSessions */
    {"SELECT id::text FROM resumable_ws.ws_sessions WHERE id = ANY ($1::uuid[])", 1},
    /* kAppendEvents */
    {"INSERT INTO resumable_ws.ws_events (session_id, id, event_type, payload) "
     "SELECT * FROM ROWS FROM (pg_catalog.unnest($1::uuid[]), pg_catalog.unnest($2::bigint[]), "
     "pg_catalog.unnest($3::text[]), pg_catalog.unnest($4::jsonb[]))",
     4},
    /* kSetHeads */
    {"UPDATE resumable_ws.ws_sessions s SET last_event_id = v.last_event_id, updated_at = pg_catalog.now() "
     "FROM ROWS FROM (pg_catalog.unnest($1::uuid[]), pg_catalog.unnest($2::bigint[])) "
     "AS v(session_id, last_event_id) "
     "WHERE s.id = v.session_id",
     2},
    /* kSetGenerationStatuses */
    {"UPDATE resumable_ws.ws_generations g SET status = v.status, "
     "finished_at = CASE WHEN v.status IN ('queued', 'running') THEN NULL ELSE pg_catalog.now() END "
     "FROM ROWS FROM (pg_catalog.unnest($1::uuid[]), pg_catalog.unnest($2::bigint[]), "
     "pg_catalog.unnest($3::text[])) AS v(session_id, reply_to, status) "
     "WHERE g.session_id = v.session_id AND g.reply_to = v.reply_to",
     3},
    /* kOpenGenerations */
    {"SELECT session_id::text, reply_to::text, message_id::text, status "
     "FROM resumable_ws.ws_generations WHERE status IN ('queued', 'running') "
     "ORDER BY created_at, session_id, reply_to",
     0},
    /* kLoadContext */
    {"SELECT event_type = 'user_message', coalesce(payload->>'content', '') "
     "FROM resumable_ws.ws_events WHERE session_id = $1::uuid AND id <= $2::bigint "
     "AND event_type IN ('user_message', 'assistant_done') ORDER BY id DESC LIMIT $3::integer",
     3},
    /* kTouchLiveConnections */
    {"UPDATE resumable_ws.ws_live_connections SET last_seen_at = pg_catalog.now() "
     "WHERE connection_id = ANY ($1::uuid[])",
     1},
};
static_assert(sizeof(kStatements) / sizeof(kStatements[0]) == 23, "one text per statement");

EventLog::Rows EventLog::run(Statement statement, std::initializer_list<const char *> args) {
    const StatementText &text = kStatements[statement];
    const char *const *arg_values = args.begin();
    int nargs = static_cast<int>(args.size());
    if (nargs != text.nargs) throw std::logic_error("wrong argument count for a statement");

    uint64 nrows = 0;
    int ncols = 0;
    char ***cells = nullptr;
    void **plan_slot = &plans_[statement];
    // Only C values live in this frame: an ERROR longjmps out of it.
    pg_guard([&]() noexcept {
        if (*plan_slot == nullptr) {
            Oid types[8] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
            SPIPlanPtr plan = SPI_prepare(text.sql, text.nargs, types);
            if (plan == nullptr) elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
            SPI_keepplan(plan);
            *plan_slot = plan;
        }
        Datum values[8];
        char nulls[8];
        for (int i = 0; i < nargs; i++) {
            values[i] = arg_values[i] ? CStringGetTextDatum(arg_values[i]) : (Datum)0;
            nulls[i] = arg_values[i] ? ' ' : 'n';
        }
        int rc = SPI_execute_plan(static_cast<SPIPlanPtr>(*plan_slot), values, nulls, false, 0);
        if (rc < 0) elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
        if (SPI_tuptable == nullptr) return;
        nrows = SPI_processed;
        TupleDesc desc = SPI_tuptable->tupdesc;
        ncols = desc->natts;
        cells = static_cast<char ***>(palloc(sizeof(char **) * (nrows + 1)));
        for (uint64 r = 0; r < nrows; r++) {
            cells[r] = static_cast<char **>(palloc(sizeof(char *) * ncols));
            for (int c = 0; c < ncols; c++) cells[r][c] = SPI_getvalue(SPI_tuptable->vals[r], desc, c + 1);
        }
    });

    // Copied out here, outside the guarded frame. The palloc'd cells go with
    // SPI_finish at the end of the transaction.
    Rows rows(nrows);
    for (uint64 r = 0; r < nrows; r++) {
        rows[r].reserve(ncols);
        for (int c = 0; c < ncols; c++) rows[r].emplace_back(cells[r][c] ? cells[r][c] : "");
    }
    return rows;
}

bool EventLog::extension_installed() {
    return run(kExtensionInstalled, {}).at(0).at(0) != "0";
}

void EventLog::clear_live_connections() {
    run(kClearLiveConnections, {});
}

SessionRow EventLog::get_session(const std::string &session_id) {
    SessionRow row;
    Rows rows = run(kGetSession, {session_id.c_str()});
    if (rows.empty()) return row;
    row.found = true;
    row.user_id = rows[0][0];
    row.active = rows[0][1] == "active";
    row.last_event_id = std::stoll(rows[0][2]);
    return row;
}

std::string EventLog::create_session(const std::string &user_id) {
    return run(kCreateSession, {user_id.c_str()}).at(0).at(0);
}

std::string EventLog::add_live_connection(const std::string &session_id, const std::string &user_id, int worker_pid,
                                          const std::string &remote_addr) {
    std::string pid = std::to_string(worker_pid);
    return run(kAddLiveConnection,
               {session_id.c_str(), user_id.c_str(), pid.c_str(), remote_addr.empty() ? nullptr : remote_addr.c_str()})
        .at(0)
        .at(0);
}

void EventLog::remove_live_connection(const std::string &connection_id) {
    run(kRemoveLiveConnection, {connection_id.c_str()});
}

LockResult EventLog::lock_session(const std::string &session_id, int64_t &last_event_id, bool &active) {
    Rows rows = run(kLockSession, {session_id.c_str()});
    if (rows.empty()) return get_session(session_id).found ? LockResult::Busy : LockResult::Missing;
    active = rows[0][0] == "active";
    last_event_id = std::stoll(rows[0][1]);
    return LockResult::Locked;
}

bool EventLog::find_idempotency_key(const std::string &session_id, const std::string &key, int64_t &event_id,
                                    std::string &content) {
    Rows rows = run(kFindIdempotencyKey, {session_id.c_str(), key.c_str()});
    if (rows.empty()) return false;
    event_id = std::stoll(rows[0][0]);
    content = rows[0][1];
    return true;
}

void EventLog::insert_event(const std::string &session_id, int64_t id, const std::string &event_type,
                            const std::string &payload_json) {
    std::string id_text = std::to_string(id);
    run(kInsertEvent, {session_id.c_str(), id_text.c_str(), event_type.c_str(), payload_json.c_str()});
}

void EventLog::insert_idempotency_key(const std::string &session_id, const std::string &key, int64_t event_id) {
    std::string id_text = std::to_string(event_id);
    run(kInsertIdempotencyKey, {session_id.c_str(), key.c_str(), id_text.c_str()});
}

void EventLog::set_last_event_id(const std::string &session_id, int64_t last_event_id) {
    std::string id_text = std::to_string(last_event_id);
    run(kSetLastEventId, {session_id.c_str(), id_text.c_str()});
}

bool EventLog::ping_database() {
    return run(kPing, {}).at(0).at(0) == "t";
}

// A Postgres array literal of quoted elements: data, never SQL text.
template <typename Items, typename Field>
static std::string array_literal(const Items &items, Field field) {
    std::string out = "{";
    for (const auto &item : items) {
        if (out.size() > 1) out.push_back(',');
        out.push_back('"');
        for (char c : field(item)) {
            if (c == '"' || c == '\\') out.push_back('\\');
            out.push_back(c);
        }
        out.push_back('"');
    }
    out.push_back('}');
    return out;
}

void EventLog::touch_live_connections(const std::vector<std::string> &connection_ids) {
    if (connection_ids.empty()) return;
    std::string ids = array_literal(connection_ids, [](const std::string &id) { return id; });
    run(kTouchLiveConnections, {ids.c_str()});
}

void EventLog::insert_generation(const std::string &session_id, int64_t reply_to, const std::string &message_id) {
    std::string reply_text = std::to_string(reply_to);
    run(kInsertGeneration, {session_id.c_str(), reply_text.c_str(), message_id.c_str()});
}

std::vector<LockedSession> EventLog::lock_sessions(const std::vector<std::string> &session_ids) {
    std::string ids = array_literal(session_ids, [](const std::string &id) { return id; });
    std::vector<LockedSession> sessions;
    for (auto &row : run(kLockSessions, {ids.c_str()}))
        sessions.push_back(LockedSession{std::move(row[0]), row[1] == "active", std::stoll(row[2])});
    return sessions;
}

std::vector<std::string> EventLog::existing_sessions(const std::vector<std::string> &session_ids) {
    std::string ids = array_literal(session_ids, [](const std::string &id) { return id; });
    std::vector<std::string> existing;
    for (auto &row : run(kExistingSessions, {ids.c_str()})) existing.push_back(std::move(row[0]));
    return existing;
}

void EventLog::append_events(const std::vector<NewEvent> &events) {
    if (events.empty()) return;
    std::string sessions = array_literal(events, [](const NewEvent &e) { return e.session_id; });
    std::string ids = array_literal(events, [](const NewEvent &e) { return std::to_string(e.id); });
    std::string types = array_literal(events, [](const NewEvent &e) { return e.event_type; });
    std::string payloads = array_literal(events, [](const NewEvent &e) { return e.payload_json; });
    run(kAppendEvents, {sessions.c_str(), ids.c_str(), types.c_str(), payloads.c_str()});
}

void EventLog::set_heads(const std::vector<SessionHead> &heads) {
    if (heads.empty()) return;
    std::string sessions = array_literal(heads, [](const SessionHead &h) { return h.session_id; });
    std::string ids = array_literal(heads, [](const SessionHead &h) { return std::to_string(h.last_event_id); });
    run(kSetHeads, {sessions.c_str(), ids.c_str()});
}

void EventLog::set_generation_statuses(const std::vector<GenerationStatus> &statuses) {
    if (statuses.empty()) return;
    std::string sessions = array_literal(statuses, [](const GenerationStatus &s) { return s.session_id; });
    std::string replies = array_literal(statuses, [](const GenerationStatus &s) { return std::to_string(s.reply_to); });
    std::string values = array_literal(statuses, [](const GenerationStatus &s) { return s.status; });
    run(kSetGenerationStatuses, {sessions.c_str(), replies.c_str(), values.c_str()});
}

std::vector<EventRow> EventLog::read_events(const std::vector<Cursor> &cursors, int limit) {
    std::string limit_text = std::to_string(limit);
    // One session (the common case outside AI bursts) has a cheaper plan.
    Rows rows;
    if (cursors.size() == 1) {
        std::string after = std::to_string(cursors[0].after);
        rows = run(kReadSessionEvents, {cursors[0].session_id.c_str(), after.c_str(), limit_text.c_str()});
    } else {
        std::string sessions = array_literal(cursors, [](const Cursor &c) { return c.session_id; });
        std::string afters = array_literal(cursors, [](const Cursor &c) { return std::to_string(c.after); });
        rows = run(kReadEvents, {sessions.c_str(), afters.c_str(), limit_text.c_str()});
    }
    std::vector<EventRow> events;
    events.reserve(rows.size());
    for (auto &row : rows) {
        int64_t id = std::stoll(row[1]);
        events.push_back(
            EventRow{static_cast<size_t>(std::stoull(row[0])), id, frames::event(id, row[2], row[3], row[4])});
    }
    return events;
}

std::vector<OpenGeneration> EventLog::open_generations() {
    std::vector<OpenGeneration> open;
    for (auto &row : run(kOpenGenerations, {}))
        open.push_back(OpenGeneration{std::move(row[0]), std::stoll(row[1]), std::move(row[2]), row[3] == "running"});
    return open;
}

std::vector<ContextMessage> EventLog::load_context(const std::string &session_id, int64_t upto, int limit) {
    std::string upto_text = std::to_string(upto), limit_text = std::to_string(limit);
    std::vector<ContextMessage> messages;
    for (auto &row : run(kLoadContext, {session_id.c_str(), upto_text.c_str(), limit_text.c_str()}))
        messages.push_back(ContextMessage{row[0] == "t", std::move(row[1])});
    return messages;
}

}  // namespace rws
