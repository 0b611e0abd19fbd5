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
    PgError(const std::string &message, int sqlerrcode) : std::runtime_error(message), sqlerrcode_(sqlerrcode) {}
    int sqlerrcode() const { return sqlerrcode_; }

  private:
    int sqlerrcode_;
};

// Saves Postgres's error-handling stacks (where an ERROR longjmps to, and the
// error context callbacks) and puts them back when it goes out of scope,
// however the scope is left.
class ErrorStacksGuard {
  public:
    ErrorStacksGuard() noexcept : exception_stack_(PG_exception_stack), context_stack_(error_context_stack) {}
    ~ErrorStacksGuard() noexcept { restore(); }
    void restore() const noexcept {
        PG_exception_stack = exception_stack_;
        error_context_stack = context_stack_;
    }
    ErrorStacksGuard(const ErrorStacksGuard &) = delete;
    ErrorStacksGuard &operator=(const ErrorStacksGuard &) = delete;

  private:
    sigjmp_buf *exception_stack_;
    ErrorContextCallback *context_stack_;
};

// Runs fn (which calls Postgres and may ereport) with an ERROR caught, as
// PG_TRY does. fn must be noexcept (the compiler checks) and must not own
// C++ objects with destructors: a longjmp out of it would skip them. An ERROR
// is logged (when log is true), flushed, and rethrown as PgError once the
// frame that caught it is gone. The caller still has to abort its
// transaction.
template <typename Fn>
void pg_guard(Fn &&fn, bool log = true) {
    static_assert(noexcept(fn()),
                  "pg_guard: the guarded code must be noexcept; a C++ exception must not cross Postgres frames");
    MemoryContext const caller_context = CurrentMemoryContext;
    volatile bool failed = false;  // volatile: set after a longjmp
    char message[512];
    volatile int sqlerrcode = 0;
    {
        ErrorStacksGuard stacks;
        sigjmp_buf local_jump;
        if (sigsetjmp(local_jump, 0) == 0) {
            PG_exception_stack = &local_jump;
            fn();
        } else {
            stacks.restore();
            MemoryContextSwitchTo(caller_context);
            if (log) EmitErrorReport();
            ErrorData *edata = CopyErrorData();
            strlcpy(message, edata->message ? edata->message : "unknown error", sizeof(message));
            sqlerrcode = edata->sqlerrcode;
            FreeErrorData(edata);
            FlushErrorState();
            failed = true;
        }
    }
    if (failed) throw PgError(message, sqlerrcode);
}

}  // namespace rws
