// Postgres headers for C++, and the two bridges between Postgres errors
// (longjmp) and C++ exceptions (stack unwinding). See DESIGN.md "C++ inside
// Postgres": a longjmp must never cross a C++ frame that owns objects, and a
// C++ exception must never cross a Postgres frame.
#pragma once

extern "C" {
#include "postgres.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/elog.h"
#include "utils/memutils.h"
}

#include <stdexcept>
#include <string>

namespace rws {

// A Postgres ERROR caught by pg_guard, carried as a C++ exception.
class PgError : public std::runtime_error {
  public:
    PgError(const std::string &message, int sqlerrcode)
        : std::runtime_error(message), sqlerrcode_(sqlerrcode) {}
    int sqlerrcode() const { return sqlerrcode_; }

  private:
    int sqlerrcode_;
};

// Runs fn (which calls Postgres and may ereport) inside PG_TRY. fn must not own
// C++ objects with destructors: a longjmp out of it would skip them. An ERROR
// is logged (when log is true), flushed, and rethrown as PgError once the
// PG_TRY frame is gone. The caller still has to abort its transaction.
template <typename Fn>
void pg_guard(Fn &&fn, bool log = true) {
    MemoryContext caller_context = CurrentMemoryContext;
    volatile bool failed = false;
    char message[512];
    volatile int sqlerrcode = 0;
    PG_TRY();
    {
        fn();
    }
    PG_CATCH();
    {
        MemoryContextSwitchTo(caller_context);
        if (log) EmitErrorReport();
        ErrorData *edata = CopyErrorData();
        strlcpy(message, edata->message ? edata->message : "unknown error", sizeof(message));
        sqlerrcode = edata->sqlerrcode;
        FreeErrorData(edata);
        FlushErrorState();
        failed = true;
    }
    PG_END_TRY();
    if (failed) throw PgError(message, sqlerrcode);
}

}  // namespace rws
