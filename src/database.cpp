#include "database.hpp"

#include "metrics.hpp"
#include "pg.hpp"

#include <chrono>

extern "C" {
#include "access/xact.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/snapmgr.h"
}

namespace rws {

static MemoryContext pass_context() {
    static MemoryContext context = nullptr;
    if (context == nullptr)
        context = AllocSetContextCreate(TopMemoryContext, "resumable_ws pass", ALLOCSET_DEFAULT_SIZES);
    return context;
}

bool Database::transact(const std::function<void(EventLog &)> &work) {
    bool started = false;
    try {
        pg_guard([&]() noexcept {
            SetCurrentStatementStartTimestamp();
            StartTransactionCommand();
            started = true;
            if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "SPI_connect failed");
            PushActiveSnapshot(GetTransactionSnapshot());
            pgstat_report_activity(STATE_RUNNING, "resumable_ws: serving");
        });
        work(log_);
        auto commit_start = std::chrono::steady_clock::now();
        pg_guard([&]() noexcept {
            SPI_finish();
            PopActiveSnapshot();
            CommitTransactionCommand();
            pgstat_report_activity(STATE_IDLE, nullptr);
        });
        metrics().commit_duration.observe(kDurationBuckets, std::chrono::steady_clock::now() - commit_start);
        MemoryContextSwitchTo(pass_context());
        MemoryContextReset(pass_context());
        return true;
    } catch (const PgError &) {
        // Already logged by pg_guard.
    } catch (const std::exception &e) {
        fprintf(stderr, "resumable_ws: %s\n", e.what());
    }
    if (started) {
        try {
            pg_guard([]() noexcept {
                AbortCurrentTransaction();
                pgstat_report_activity(STATE_IDLE, nullptr);
            });
        } catch (...) {
        }
    }
    MemoryContextSwitchTo(pass_context());
    MemoryContextReset(pass_context());
    return false;
}

}  // namespace rws
