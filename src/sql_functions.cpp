// C functions behind the SQL API (sql/resumable_ws--1.0.sql).
#include "pg.hpp"

#include "auth.hpp"
#include "settings.hpp"
#include "shared_state.hpp"

#include <ctime>

extern "C" {
#include "datatype/timestamp.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

PG_FUNCTION_INFO_V1(rws_wake_at_commit);
PG_FUNCTION_INFO_V1(rws_sign_token);
}

extern "C" Datum rws_wake_at_commit(PG_FUNCTION_ARGS) {
    pg_uuid_t *session_id = PG_GETARG_UUID_P(0);
    bool closed = PG_GETARG_BOOL(1);
    rws::wake_at_commit(*session_id, closed);
    PG_RETURN_VOID();
}

// Signs in C++ into a fixed buffer so that no C++ object is alive while
// Postgres code that may ereport runs.
static bool sign_into(char *out, size_t out_size, const char *user_id, int64 ttl_seconds,
                      char *error, size_t error_size) {
    try {
        std::string token = rws::sign_token(user_id, ttl_seconds, rws::settings.jwt_secret,
                                            rws::settings.jwt_audience, time(nullptr));
        if (token.size() + 1 > out_size) throw std::runtime_error("token too long");
        memcpy(out, token.c_str(), token.size() + 1);
        return true;
    } catch (const std::exception &e) {
        strlcpy(error, e.what(), error_size);
        return false;
    }
}

extern "C" Datum rws_sign_token(PG_FUNCTION_ARGS) {
    pg_uuid_t *user_id = PG_GETARG_UUID_P(0);
    Interval *ttl = PG_GETARG_INTERVAL_P(1);

    if (rws::settings.jwt_secret == nullptr || rws::settings.jwt_secret[0] == '\0')
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("resumable_ws.jwt_secret is not set"),
                        errhint("Set it in postgresql.conf or with ALTER SYSTEM, then reload.")));

    int64 ttl_seconds = (ttl->time / USECS_PER_SEC) + (int64)ttl->day * SECS_PER_DAY +
                        (int64)ttl->month * DAYS_PER_MONTH * SECS_PER_DAY;
    if (ttl_seconds <= 0 || ttl_seconds > (int64)366 * SECS_PER_DAY)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("ttl must be positive and at most 366 days")));

    char *user_text = DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(user_id)));
    char token[4096];
    char error[256];
    if (!sign_into(token, sizeof(token), user_text, ttl_seconds, error, sizeof(error)))
        ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("resumable_ws: cannot sign token: %s", error)));
    PG_RETURN_TEXT_P(cstring_to_text(token));
}
