#include "event_log.hpp"

#include "event_frame.hpp"
#include "pg.hpp"
#include "uuid.hpp"

extern "C" {
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/uuid.h"
}

#include <string>

namespace rws {

// Parameters are text, or one-dimensional arrays sent in binary (the bulk
// statements: one array per column, unnested in SQL).
struct StatementText {
    const char *sql;
    int nargs;
    Oid types[4];  // 0: text
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
#define CREATED_AT_SQL(column) "pg_catalog.to_char(" column " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
#define EVENT_COLUMNS_SQL "e.event_type, e.payload::text, " CREATED_AT_SQL("e.created_at") " "
static const StatementText kStatements[] = {
    /* kExtensionInstalled */
    {"SELECT pg_catalog.count(*) FROM pg_catalog.pg_extension WHERE extname = 'resumable_ws'", 0, {}},
    /* kClearLiveConnections */
    {"DELETE FROM resumable_ws.ws_live_connections WHERE worker_pid <> ALL ($1::integer[])", 1, {INT8ARRAYOID}},
    /* kGetSession */
    {"SELECT user_id::text, status, last_event_id::text FROM resumable_ws.ws_sessions "
     "WHERE id = $1::uuid",
     1,
     {}},
    /* kCreateSession */
    {"INSERT INTO resumable_ws.ws_sessions (user_id) VALUES ($1::uuid) RETURNING id::text", 1, {}},
    /* kAddLiveConnection */
    {"INSERT INTO resumable_ws.ws_live_connections (session_id, user_id, worker_pid, remote_addr) "
     "VALUES ($1::uuid, $2::uuid, $3::integer, $4) RETURNING connection_id::text",
     4,
     {}},
    /* kRemoveLiveConnection */
    {"DELETE FROM resumable_ws.ws_live_connections WHERE connection_id = $1::uuid", 1, {}},
    /* kTouchLiveConnections */
    {"UPDATE resumable_ws.ws_live_connections SET last_seen_at = pg_catalog.now() "
     "WHERE connection_id = ANY ($1)",
     1,
     {UUIDARRAYOID}},
    /* kLockSessions */
    {"SELECT id::text, status, last_event_id::text FROM resumable_ws.ws_sessions "
     "WHERE id = ANY ($1) FOR UPDATE SKIP LOCKED",
     1,
     {UUIDARRAYOID}},
    /* kExistingSessions */
    {"SELECT id::text FROM resumable_ws.ws_sessions WHERE id = ANY ($1)", 1, {UUIDARRAYOID}},
    /* kFindIdempotencyKeys */
    {"SELECT (r.n - 1)::text, k.event_id::text, coalesce(e.payload->>'content', '') "
     "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) WITH ORDINALITY "
     "AS r(session_id, idempotency_key, n) "
     "JOIN resumable_ws.ws_idempotency_keys k "
     "ON k.session_id = r.session_id AND k.idempotency_key = r.idempotency_key "
     "JOIN resumable_ws.ws_events e ON e.session_id = k.session_id AND e.id = k.event_id",
     2,
     {UUIDARRAYOID, UUIDARRAYOID}},
    /* kAppendEvents */
    {"INSERT INTO resumable_ws.ws_events (session_id, id, event_type, payload) "
     "SELECT v.session_id, v.id, v.event_type, v.payload::jsonb "
     "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4)) "
     "AS v(session_id, id, event_type, payload)",
     4,
     {UUIDARRAYOID, INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID}},
    /* kInsertIdempotencyKeys */
    {"INSERT INTO resumable_ws.ws_idempotency_keys (session_id, idempotency_key, event_id) "
     "SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3))",
     3,
     {UUIDARRAYOID, UUIDARRAYOID, INT8ARRAYOID}},
    /* kInsertGenerations */
    {"INSERT INTO resumable_ws.ws_generations (session_id, reply_to, message_id) "
     "SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3))",
     3,
     {UUIDARRAYOID, INT8ARRAYOID, UUIDARRAYOID}},
    /* kSetHeads */
    {"UPDATE resumable_ws.ws_sessions s SET last_event_id = v.last_event_id, updated_at = pg_catalog.now() "
     "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS v(session_id, last_event_id) "
     "WHERE s.id = v.session_id RETURNING " CREATED_AT_SQL("pg_catalog.now()"),
     2,
     {UUIDARRAYOID, INT8ARRAYOID}},
    /* kSetGenerationStatuses */
    {"UPDATE resumable_ws.ws_generations g SET status = v.status, "
     "finished_at = CASE WHEN v.status IN ('queued', 'running') THEN NULL ELSE pg_catalog.now() END "
     "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3)) "
     "AS v(session_id, reply_to, status) "
     "WHERE g.session_id = v.session_id AND g.reply_to = v.reply_to",
     3,
     {UUIDARRAYOID, INT8ARRAYOID, TEXTARRAYOID}},
    /* kOpenGenerations */
    {"SELECT session_id::text, reply_to::text, message_id::text, status "
     "FROM resumable_ws.ws_generations WHERE session_id = ANY ($1) AND status IN ('queued', 'running') "
     "ORDER BY session_id, reply_to",
     1,
     {UUIDARRAYOID}},
    /* kSessionsWithOpenGenerations */
    {"SELECT DISTINCT session_id::text FROM resumable_ws.ws_generations WHERE status IN ('queued', 'running')", 0, {}},
    /* kLoadContexts */
    {"SELECT (c.n - 1)::text, e.event_type = 'user_message', coalesce(e.payload->>'content', '') "
     "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) WITH ORDINALITY AS c(session_id, upto, n) "
     "CROSS JOIN LATERAL (SELECT e.id, e.event_type, e.payload FROM resumable_ws.ws_events e "
     "WHERE e.session_id = c.session_id AND e.id <= c.upto "
     "AND e.event_type IN ('user_message', 'assistant_done') ORDER BY e.id DESC LIMIT $3::integer) e "
     "ORDER BY c.n, e.id DESC",
     3,
     {UUIDARRAYOID, INT8ARRAYOID, 0}},
    /* kReadSessionEvents */
    {"SELECT '0', e.id::text, " EVENT_COLUMNS_SQL
     "FROM resumable_ws.ws_events e WHERE e.session_id = $1::uuid AND e.id > $2::bigint "
     "ORDER BY e.id LIMIT $3::integer",  // e.id: the bigint, not the text output column
     3,
     {}},
    /* kReadEvents */
    {"SELECT (c.n - 1)::text, e.id::text, " EVENT_COLUMNS_SQL
     "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) "
     "WITH ORDINALITY AS c(session_id, after_id, n) "
     "CROSS JOIN LATERAL (SELECT * FROM resumable_ws.ws_events e "
     "WHERE e.session_id = c.session_id AND e.id > c.after_id "
     "ORDER BY e.id LIMIT $3::integer) e "
     "ORDER BY c.n, e.id",  // e.id: the bigint, not the text output column
     3,
     {UUIDARRAYOID, INT8ARRAYOID, 0}},
    /* kPing */
    {"SELECT pg_catalog.pg_is_in_recovery()", 0, {}},
};
static_assert(sizeof(kStatements) / sizeof(kStatements[0]) == 21, "one text per statement");

// One parameter: text (nullptr is NULL), or a column of values sent as one
// binary array (uuid[], bigint[] or text[], as the statement declares).
struct EventLog::Param {
    const char *text = nullptr;
    std::vector<pg_uuid_t> uuids;
    std::vector<int64_t> ints;
    std::vector<const std::string *> texts;  // owned by the caller

    template <typename Items, typename Field>
    static Param uuid_column(const Items &items, Field field) {
        Param param;
        param.uuids.resize(items.size());
        size_t i = 0;
        for (const auto &item : items)
            if (!uuid_bytes(field(item), param.uuids[i++].data))
                throw std::invalid_argument("not a UUID: " + std::string(field(item)).substr(0, 40));
        return param;
    }
    template <typename Items, typename Field>
    static Param int_column(const Items &items, Field field) {
        Param param;
        param.ints.reserve(items.size());
        for (const auto &item : items) param.ints.push_back(field(item));
        return param;
    }
    template <typename Items, typename Field>
    static Param text_column(const Items &items, Field field) {
        Param param;
        param.texts.reserve(items.size());
        for (const auto &item : items) param.texts.push_back(&field(item));
        return param;
    }
};

// Inside pg_guard: the Datum of one parameter (palloc'd in SPI's context).
static Datum param_datum(Oid type, const EventLog::Param &param) noexcept;

EventLog::Rows EventLog::run(Statement statement, std::initializer_list<const char *> args) {
    std::vector<Param> params(args.size());
    size_t i = 0;
    for (const char *arg : args) params[i++].text = arg;
    return run(statement, params);
}

EventLog::Rows EventLog::run(Statement statement, const std::vector<Param> &params) {
    const StatementText &text = kStatements[statement];
    const Param *param_values = params.data();
    int nargs = static_cast<int>(params.size());
    if (nargs != text.nargs) throw std::logic_error("wrong argument count for a statement");

    uint64 nrows = 0;
    int ncols = 0;
    char ***cells = nullptr;
    void **plan_slot = &plans_[statement];
    // Only C values live in this frame: an ERROR longjmps out of it.
    pg_guard([&]() noexcept {
        Oid types[4];
        for (int i = 0; i < 4; i++) types[i] = text.types[i] == InvalidOid ? TEXTOID : text.types[i];
        if (*plan_slot == nullptr) {
            SPIPlanPtr plan = SPI_prepare(text.sql, text.nargs, types);
            if (plan == nullptr) elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
            SPI_keepplan(plan);
            *plan_slot = plan;
        }
        Datum values[4];
        char nulls[4];
        for (int i = 0; i < nargs; i++) {
            const EventLog::Param &param = param_values[i];
            bool is_null = types[i] == TEXTOID && param.text == nullptr;
            values[i] = is_null ? (Datum)0 : param_datum(types[i], param);
            nulls[i] = is_null ? 'n' : ' ';
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

static Datum param_datum(Oid type, const EventLog::Param &param) noexcept {
    if (type == TEXTOID) return CStringGetTextDatum(param.text);
    size_t count = type == UUIDARRAYOID   ? param.uuids.size()
                   : type == INT8ARRAYOID ? param.ints.size()
                                          : param.texts.size();
    int n = static_cast<int>(count);
    Datum *elements = static_cast<Datum *>(palloc(sizeof(Datum) * (count + 1)));
    ArrayType *array = nullptr;
    switch (type) {
        case UUIDARRAYOID:
            for (size_t i = 0; i < count; i++) elements[i] = UUIDPGetDatum(&param.uuids[i]);
            array = construct_array(elements, n, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR);
            break;
        case INT8ARRAYOID:
            for (size_t i = 0; i < count; i++) elements[i] = Int64GetDatum(param.ints[i]);
            array = construct_array(elements, n, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
            break;
        case TEXTARRAYOID:
            for (size_t i = 0; i < count; i++) {
                const std::string &value = *param.texts[i];
                elements[i] = PointerGetDatum(cstring_to_text_with_len(value.data(), static_cast<int>(value.size())));
            }
            array = construct_array(elements, n, TEXTOID, -1, false, TYPALIGN_INT);
            break;
        default: elog(ERROR, "resumable_ws: unsupported parameter type %u", type);
    }
    return PointerGetDatum(array);
}

bool EventLog::extension_installed() {
    return run(kExtensionInstalled, {}).at(0).at(0) != "0";
}

void EventLog::clear_live_connections(const std::vector<int> &keep_worker_pids) {
    run(kClearLiveConnections,
        {Param::int_column(keep_worker_pids, [](int pid) { return static_cast<int64_t>(pid); })});
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

bool EventLog::ping_database() {
    return run(kPing, {}).at(0).at(0) == "t";
}

static const std::string &session_of(const std::string &id) {
    return id;
}

void EventLog::touch_live_connections(const std::vector<std::string> &connection_ids) {
    if (connection_ids.empty()) return;
    run(kTouchLiveConnections, {Param::uuid_column(connection_ids, session_of)});
}

std::vector<LockedSession> EventLog::lock_sessions(const std::vector<std::string> &session_ids) {
    std::vector<LockedSession> sessions;
    if (session_ids.empty()) return sessions;
    for (auto &row : run(kLockSessions, {Param::uuid_column(session_ids, session_of)}))
        sessions.push_back(LockedSession{std::move(row[0]), row[1] == "active", std::stoll(row[2])});
    return sessions;
}

std::vector<std::string> EventLog::existing_sessions(const std::vector<std::string> &session_ids) {
    std::vector<std::string> existing;
    if (session_ids.empty()) return existing;
    for (auto &row : run(kExistingSessions, {Param::uuid_column(session_ids, session_of)}))
        existing.push_back(std::move(row[0]));
    return existing;
}

std::vector<FoundKey> EventLog::find_idempotency_keys(const std::vector<KeyLookup> &lookups) {
    std::vector<FoundKey> found;
    if (lookups.empty()) return found;
    Rows rows =
        run(kFindIdempotencyKeys,
            {Param::uuid_column(lookups, [](const KeyLookup &l) -> const std::string & { return l.session_id; }),
             Param::uuid_column(lookups, [](const KeyLookup &l) -> const std::string & { return l.key; })});
    for (auto &row : rows) found.push_back(FoundKey{std::stoull(row[0]), std::stoll(row[1]), std::move(row[2])});
    return found;
}

void EventLog::append_events(const std::vector<NewEvent> &events) {
    if (events.empty()) return;
    std::vector<std::string> types;
    types.reserve(events.size());
    for (const NewEvent &e : events) types.emplace_back(e.event_type);
    run(kAppendEvents,
        {Param::uuid_column(events, [](const NewEvent &e) -> const std::string & { return e.session_id; }),
         Param::int_column(events, [](const NewEvent &e) { return e.id; }),
         Param::text_column(types, [](const std::string &t) -> const std::string & { return t; }),
         Param::text_column(events, [](const NewEvent &e) -> const std::string & { return e.payload_json; })});
}

void EventLog::insert_idempotency_keys(const std::vector<NewIdempotencyKey> &keys) {
    if (keys.empty()) return;
    run(kInsertIdempotencyKeys,
        {Param::uuid_column(keys, [](const NewIdempotencyKey &k) -> const std::string & { return k.session_id; }),
         Param::uuid_column(keys, [](const NewIdempotencyKey &k) -> const std::string & { return k.key; }),
         Param::int_column(keys, [](const NewIdempotencyKey &k) { return k.event_id; })});
}

void EventLog::insert_generations(const std::vector<NewGeneration> &generations) {
    if (generations.empty()) return;
    run(kInsertGenerations,
        {Param::uuid_column(generations, [](const NewGeneration &g) -> const std::string & { return g.session_id; }),
         Param::int_column(generations, [](const NewGeneration &g) { return g.reply_to; }),
         Param::uuid_column(generations, [](const NewGeneration &g) -> const std::string & { return g.message_id; })});
}

std::string EventLog::set_heads(const std::vector<SessionHead> &heads) {
    if (heads.empty()) return {};
    Rows rows = run(
        kSetHeads, {Param::uuid_column(heads, [](const SessionHead &h) -> const std::string & { return h.session_id; }),
                    Param::int_column(heads, [](const SessionHead &h) { return h.last_event_id; })});
    return rows.empty() ? std::string() : rows[0][0];
}

void EventLog::set_generation_statuses(const std::vector<GenerationStatus> &statuses) {
    if (statuses.empty()) return;
    run(kSetGenerationStatuses,
        {Param::uuid_column(statuses, [](const GenerationStatus &s) -> const std::string & { return s.session_id; }),
         Param::int_column(statuses, [](const GenerationStatus &s) { return s.reply_to; }),
         Param::text_column(statuses, [](const GenerationStatus &s) -> const std::string & { return s.status; })});
}

std::vector<EventRow> EventLog::read_events(const std::vector<Cursor> &cursors, int limit) {
    std::string limit_text = std::to_string(limit);
    // One session (the common case outside AI bursts) has a cheaper plan.
    Rows rows;
    if (cursors.size() == 1) {
        std::string after = std::to_string(cursors[0].after);
        rows = run(kReadSessionEvents, {cursors[0].session_id.c_str(), after.c_str(), limit_text.c_str()});
    } else {
        Param limit_param;
        limit_param.text = limit_text.c_str();
        rows = run(kReadEvents,
                   {Param::uuid_column(cursors, [](const Cursor &c) -> const std::string & { return c.session_id; }),
                    Param::int_column(cursors, [](const Cursor &c) { return c.after; }), std::move(limit_param)});
    }
    std::vector<EventRow> events;
    events.reserve(rows.size());
    for (auto &row : rows) {
        int64_t id = std::stoll(row[1]);
        events.push_back(EventRow{static_cast<size_t>(std::stoull(row[0])), id,
                                  std::make_shared<const std::string>(frames::event(id, row[2], row[3], row[4]))});
    }
    return events;
}

std::vector<OpenGeneration> EventLog::open_generations(const std::vector<std::string> &session_ids) {
    std::vector<OpenGeneration> open;
    if (session_ids.empty()) return open;
    for (auto &row : run(kOpenGenerations, {Param::uuid_column(session_ids, session_of)}))
        open.push_back(OpenGeneration{std::move(row[0]), std::stoll(row[1]), std::move(row[2]), row[3] == "running"});
    return open;
}

std::vector<std::string> EventLog::sessions_with_open_generations() {
    std::vector<std::string> sessions;
    for (auto &row : run(kSessionsWithOpenGenerations, {})) sessions.push_back(std::move(row[0]));
    return sessions;
}

std::vector<std::vector<ContextMessage>> EventLog::load_contexts(const std::vector<ContextLookup> &lookups, int limit) {
    std::vector<std::vector<ContextMessage>> contexts(lookups.size());
    if (lookups.empty()) return contexts;
    std::string limit_text = std::to_string(limit);
    Param limit_param;
    limit_param.text = limit_text.c_str();
    Rows rows =
        run(kLoadContexts,
            {Param::uuid_column(lookups, [](const ContextLookup &l) -> const std::string & { return l.session_id; }),
             Param::int_column(lookups, [](const ContextLookup &l) { return l.upto; }), std::move(limit_param)});
    for (auto &row : rows) {
        size_t index = std::stoull(row[0]);
        if (index < contexts.size()) contexts[index].push_back(ContextMessage{row[1] == "t", std::move(row[2])});
    }
    return contexts;
}

}  // namespace rws
