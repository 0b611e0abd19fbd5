// C functions behind the SQL API (sql/resumable_ws--1.0.sql).
#include "pg.hpp"

#include "auth.hpp"
#include "settings.hpp"
#include "shared_state.hpp"

#include <ctime>

extern "C" {
#include "commands/trigger.h"
#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

PG_FUNCTION_INFO_V1(rws_wake_at_commit);
PG_FUNCTION_INFO_V1(rws_on_event_insert);
PG_FUNCTION_INFO_V1(rws_on_session_close);
PG_FUNCTION_INFO_V1(rws_sign_token);
}

extern "C" Datum rws_wake_at_commit(PG_FUNCTION_ARGS) {
    pg_uuid_t *session_id = PG_GETARG_UUID_P(0);
    bool closed = PG_GETARG_BOOL(1);
    rws::wake_at_commit(*session_id, closed);
    PG_RETURN_VOID();
}

// The trigger's row, with the column of that name (which must be set).
static Datum trigger_column(TriggerData *trigger, HeapTuple row, const char *column) {
    TupleDesc desc = trigger->tg_relation->rd_att;
    int attnum = SPI_fnumber(desc, column);
    bool isnull = true;
    Datum value = attnum > 0 ? heap_getattr(row, attnum, desc, &isnull) : (Datum)0;
    if (isnull) elog(ERROR, "resumable_ws: trigger row has no %s", column);
    return value;
}

static TriggerData *row_trigger(FunctionCallInfo fcinfo, const char *name) {
    if (!CALLED_AS_TRIGGER(fcinfo)) elog(ERROR, "%s: not called as a trigger", name);
    auto *trigger = reinterpret_cast<TriggerData *>(fcinfo->context);
    if (!TRIGGER_FIRED_FOR_ROW(trigger->tg_event) || !TRIGGER_FIRED_BEFORE(trigger->tg_event))
        elog(ERROR, "%s: must be a BEFORE ... FOR EACH ROW trigger", name);
    return trigger;
}

// BEFORE INSERT on ws_events: refuses an event larger than a client could be
// sent, and wakes the worker at commit. The worker's own appends are checked
// where they are made, and it delivers them itself.
extern "C" Datum rws_on_event_insert(PG_FUNCTION_ARGS) {
    TriggerData *trigger = row_trigger(fcinfo, "rws_on_event_insert");
    HeapTuple row = trigger->tg_trigtuple;
    if (rws::is_worker_process()) return PointerGetDatum(row);

    Jsonb *payload = DatumGetJsonbP(trigger_column(trigger, row, "payload"));
    text *event_type = DatumGetTextPP(trigger_column(trigger, row, "event_type"));
    // Measured as sent: the payload's JSON text and the event type.
    char *payload_text = JsonbToCString(nullptr, &payload->root, VARSIZE(payload));
    size_t size = strlen(payload_text) + VARSIZE_ANY_EXHDR(event_type);
    pfree(payload_text);
    size_t limit = rws::event_size_limit();
    if (size > limit)
        ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
                        errmsg("resumable_ws: event of %zu bytes is larger than the limit of %zu bytes", size, limit),
                        errdetail("The limit is resumable_ws.max_event_size, and at most what fits in "
                                  "resumable_ws.max_send_buffer (less 4 kB for the frame)."),
                        errhint("Publish a reference to large data instead of the data itself.")));

    rws::wake_at_commit(*DatumGetUUIDP(trigger_column(trigger, row, "session_id")), false);
    rws::count_published_event();
    return PointerGetDatum(row);
}

// BEFORE UPDATE OF status on ws_sessions, when a session becomes closed: its
// connections are told at commit.
extern "C" Datum rws_on_session_close(PG_FUNCTION_ARGS) {
    TriggerData *trigger = row_trigger(fcinfo, "rws_on_session_close");
    HeapTuple row = trigger->tg_newtuple;
    if (!rws::is_worker_process()) rws::wake_at_commit(*DatumGetUUIDP(trigger_column(trigger, row, "id")), true);
    return PointerGetDatum(row);
}

// Signs in C++ into a fixed buffer so that no C++ object is alive while
// Postgres code that may ereport runs.
static bool sign_into(char *out, size_t out_size, const char *user_id, int64 ttl_seconds, char *error,
                      size_t error_size) {
    try {
        std::string token =
            rws::sign_token(user_id, ttl_seconds, rws::settings.jwt_secret, rws::settings.jwt_audience, time(nullptr),
                            /*anonymous=*/false, rws::settings.jwt_issuer ? rws::settings.jwt_issuer : "");
        if (token.size() + 1 > out_size) throw std::runtime_error("token too long");
        memcpy(out, token.c_str(), token.size() + 1);
        return true;
    } catch (const std::exception &e) {
        strlcpy(error, e.what(), error_size);
        return false;
    } catch (...) {
        strlcpy(error, "unknown exception", error_size);
        return false;
    }
}

extern "C" Datum rws_sign_token(PG_FUNCTION_ARGS) {
    pg_uuid_t *user_id = PG_GETARG_UUID_P(0);
    Interval *ttl = PG_GETARG_INTERVAL_P(1);

    if (rws::settings.jwt_secret == nullptr || rws::settings.jwt_secret[0] == '\0')
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE), errmsg("resumable_ws.jwt_secret is not set"),
                        errhint("Set it in postgresql.conf or with ALTER SYSTEM, then reload.")));

    int64 ttl_seconds = (ttl->time / USECS_PER_SEC) + (int64)ttl->day * SECS_PER_DAY +
                        (int64)ttl->month * DAYS_PER_MONTH * SECS_PER_DAY;
    if (ttl_seconds <= 0 || ttl_seconds > (int64)366 * SECS_PER_DAY)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("ttl must be positive and at most 366 days")));

    char *user_text = DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(user_id)));
    char token[4096];
    char error[256];
    if (!sign_into(token, sizeof(token), user_text, ttl_seconds, error, sizeof(error)))
        ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("resumable_ws: cannot sign token: %s", error)));
    PG_RETURN_TEXT_P(cstring_to_text(token));
}
