// resumable_ws.stats and resumable_ws.connections(): the shared-memory
// metrics and connection records, read by any backend (PROTOCOL.md §4).
// C++ values are copied out first; Postgres code that may ereport runs only
// on plain data.
#include "pg.hpp"

#include "connection_records.hpp"
#include "metrics.hpp"

extern "C" {
#include "access/htup_details.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

PG_FUNCTION_INFO_V1(rws_stats);
PG_FUNCTION_INFO_V1(rws_connections);
}

#include <vector>

// Unix microseconds as a timestamptz.
static TimestampTz from_unix_us(int64 us) {
    return static_cast<TimestampTz>(
        us - (static_cast<int64>(POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * USECS_PER_SEC));
}

constexpr int kMaxStatColumns = 64;
struct PlainColumn {
    char name[NAMEDATALEN];
    rws::StatColumn::Kind kind;
    int64 int_value;
    double float_value;
};

// Copies the columns into plain storage; false on a C++ failure (out of memory).
static bool read_stats(PlainColumn *out, int &count) noexcept {
    try {
        std::vector<rws::StatColumn> columns = rws::stat_columns(rws::snapshot(rws::metrics()));
        count = 0;
        for (const auto &column : columns) {
            if (count == kMaxStatColumns) return false;
            PlainColumn &plain = out[count++];
            strlcpy(plain.name, column.name.c_str(), sizeof(plain.name));
            plain.kind = column.kind;
            plain.int_value = column.int_value;
            plain.float_value = column.float_value;
        }
        return true;
    } catch (...) {
        return false;
    }
}

extern "C" Datum rws_stats(PG_FUNCTION_ARGS) {
    TupleDesc desc;
    if (get_call_result_type(fcinfo, nullptr, &desc) != TYPEFUNC_COMPOSITE)
        ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED), errmsg("resumable_ws._stats must return a row")));
    static PlainColumn columns[kMaxStatColumns];
    int count = 0;
    if (!read_stats(columns, count)) elog(ERROR, "resumable_ws: cannot read the metrics");
    if (desc->natts != count)
        ereport(ERROR,
                (errcode(ERRCODE_DATATYPE_MISMATCH),
                 errmsg("resumable_ws._stats is declared with %d columns, the library has %d", desc->natts, count),
                 errhint("The extension's SQL and the installed library do not match: reinstall both.")));
    Datum values[kMaxStatColumns];
    bool nulls[kMaxStatColumns] = {};
    for (int i = 0; i < count; i++) {
        Form_pg_attribute attribute = TupleDescAttr(desc, i);
        if (strcmp(NameStr(attribute->attname), columns[i].name) != 0)
            ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
                            errmsg("resumable_ws._stats column %d is \"%s\", the library has \"%s\"", i + 1,
                                   NameStr(attribute->attname), columns[i].name)));
        switch (columns[i].kind) {
            case rws::StatColumn::Kind::Int: values[i] = Int64GetDatum(columns[i].int_value); break;
            case rws::StatColumn::Kind::Float: values[i] = Float8GetDatum(columns[i].float_value); break;
            case rws::StatColumn::Kind::Time:
                nulls[i] = columns[i].int_value == 0;
                values[i] = TimestampTzGetDatum(from_unix_us(columns[i].int_value * USECS_PER_SEC));
                break;
        }
    }
    PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

// Copies the records into palloc'd plain storage.
static bool read_records(rws::ConnectionFields *&out, size_t &count) noexcept {
    try {
        std::vector<rws::ConnectionFields> records = rws::read_connection_records(rws::connection_table());
        count = records.size();
        out = nullptr;
        if (count == 0) return true;
        out = static_cast<rws::ConnectionFields *>(malloc(sizeof(rws::ConnectionFields) * count));
        if (out == nullptr) return false;
        memcpy(static_cast<void *>(out), records.data(), sizeof(rws::ConnectionFields) * count);
        return true;
    } catch (...) {
        return false;
    }
}

static Datum uuid_or_null(const char *uuid_text, bool &isnull) {
    isnull = uuid_text[0] == '\0';
    return isnull ? (Datum)0 : DirectFunctionCall1(uuid_in, CStringGetDatum(uuid_text));
}

extern "C" Datum rws_connections(PG_FUNCTION_ARGS) {
    ReturnSetInfo *rsinfo = reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);
    InitMaterializedSRF(fcinfo, 0);

    rws::ConnectionFields *records = nullptr;
    size_t count = 0;
    if (!read_records(records, count)) elog(ERROR, "resumable_ws: cannot read the connection records");
    // Into palloc'd memory at once, so that an ERROR below leaks nothing.
    rws::ConnectionFields *copy = nullptr;
    if (count > 0) {
        copy = static_cast<rws::ConnectionFields *>(palloc(sizeof(rws::ConnectionFields) * count));
        memcpy(static_cast<void *>(copy), records, sizeof(rws::ConnectionFields) * count);
    }
    free(records);

    for (size_t i = 0; i < count; i++) {
        const rws::ConnectionFields &record = copy[i];
        Datum values[7];
        bool nulls[7] = {};
        values[0] = Int32GetDatum(record.worker_pid);
        values[1] = uuid_or_null(record.user_id, nulls[1]);
        values[2] = uuid_or_null(record.session_id, nulls[2]);
        values[3] = Int64GetDatum(record.cursor);
        values[4] = Int64GetDatum(record.queued_bytes);
        values[5] = TimestampTzGetDatum(from_unix_us(record.connected_at_us));
        nulls[6] = record.remote_addr[0] == '\0';
        values[6] = nulls[6] ? (Datum)0 : CStringGetTextDatum(record.remote_addr);
        tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
    }
    return (Datum)0;
}
