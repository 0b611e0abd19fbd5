// The background worker: connects to resumable_ws.database, waits for the
// extension to exist, then serves. It waits in exactly one place, a
// WaitEventSet holding its latch, postmaster death, the libuv backend fd and
// an eventfd for other threads, so SIGTERM, SIGHUP and barriers are always
// seen (DESIGN.md "Where things run").
#include "pg.hpp"

#include "database.hpp"
#include "generations.hpp"
#include "jwks_fetcher.hpp"
#include "jwt_keys.hpp"
#include "llm_client.hpp"
#include "metrics.hpp"
#include "server.hpp"
#include "session_hub.hpp"
#include "settings.hpp"
#include "shared_state.hpp"

extern "C" {
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "access/xact.h"
#include "utils/guc.h"
#include "utils/wait_event.h"

PGDLLEXPORT void rws_worker_main(Datum main_arg);
}

#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>

namespace rws {

static volatile sig_atomic_t shutdown_requested = false;

static void handle_sigterm(SIGNAL_ARGS) {
    int saved_errno = errno;
    shutdown_requested = true;
    SetLatch(MyLatch);
    errno = saved_errno;
}

static WorkerSlot *worker_slot = nullptr;

static void release_slot_at_exit(int, Datum) {
    if (worker_slot != nullptr) release_worker_slot(worker_slot);
}

// Interrupts (barriers, cancel requests) are handled here; a cancel of the
// worker is logged and ignored rather than ending it.
static void check_for_interrupts() {
    try {
        pg_guard([]() noexcept { CHECK_FOR_INTERRUPTS(); });
    } catch (const PgError &) {
    }
}

// Returns true if the configuration was reloaded (SIGHUP).
static bool reload_settings_if_asked() {
    if (!ConfigReloadPending) return false;
    ConfigReloadPending = false;
    try {
        pg_guard([]() noexcept { ProcessConfigFile(PGC_SIGHUP); });
    } catch (const PgError &) {
    }
    return true;
}

// Lines about the JWKS keys, from the worker (the fetch thread never logs).
static void log_keys(const KeysLog &lines) {
    for (const KeysLogLine &line : lines) {
        const char *text = line.text.c_str();
        bool warning = line.warning;
        try {
            pg_guard([text, warning]() noexcept { elog(warning ? WARNING : LOG, "%s", text); });
        } catch (const PgError &) {
        }
    }
}

// The inline JWKS and the URL, at start and after every reload.
static void configure_keys(JwtKeys &keys, SessionHub &hub) {
    KeysLog log;
    keys.configure(settings.jwt_jwks ? settings.jwt_jwks : "", settings.jwt_jwks_url ? settings.jwt_jwks_url : "",
                   Clock::now(), log);
    log_keys(log);
    hub.keys_refreshed();
}

// Sleeps until the latch is set or timeout_ms pass, before the server runs.
// Returns false if shutdown was requested.
static bool pause(long timeout_ms) {
    (void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, timeout_ms, PG_WAIT_EXTENSION);
    ResetLatch(MyLatch);
    check_for_interrupts();
    reload_settings_if_asked();
    return !shutdown_requested;
}

// Returns false if shutdown was requested while waiting.
static bool wait_for_extension(Database &db) {
    bool announced = false;
    for (;;) {
        bool installed = false;
        db.transact([&](EventLog &log) { installed = log.extension_installed(); });
        if (installed) return true;
        if (!announced) {
            elog(LOG, "resumable_ws: waiting for CREATE EXTENSION resumable_ws in database \"%s\"", settings.database);
            announced = true;
        }
        // CREATE EXTENSION wakes the latch; the timeout covers a missed wake.
        if (!pause(5000)) return false;
    }
}

// Settings of the worker's own database session.
static void configure_session() {
    // The worker is a superuser in a database where other roles may create
    // objects: only pg_catalog (and its own temporary schema, last) resolves
    // names, so nothing another role planted can run with its rights.
    SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
    // An ack promises the message is durable: never acknowledge from an
    // asynchronous commit, even where the administrator turned it off.
    if (synchronous_commit == SYNCHRONOUS_COMMIT_OFF)
        SetConfigOption("synchronous_commit", "local", PGC_SUSET, PGC_S_OVERRIDE);
    // DDL holding a lock on our tables must not freeze every connection: the
    // pass fails, is logged, and is retried.
    SetConfigOption("lock_timeout", "1s", PGC_SUSET, PGC_S_OVERRIDE);
    SetConfigOption("application_name", "resumable_ws worker", PGC_USERSET, PGC_S_OVERRIDE);
}

// The worker's inserts, updates and deletes reach pg_stat_user_tables, and so
// autovacuum and autoanalyze, only when it reports them: a backend does that
// when it goes idle, a worker must do it itself. Outside any transaction,
// after every pass (pgstat itself holds a report back to once a second), and
// forced once a second: pgstat's clock is the last transaction's end, which
// stands still while the worker runs none, so what the last write left
// pending would wait for the next transaction.
static void report_table_stats(bool force) {
    try {
        pg_guard([force]() noexcept { (void)pgstat_report_stat(force); });
    } catch (const PgError &) {
    }
}

// Each connection is a file descriptor: lift the soft limit to the hard one.
static void raise_file_limit() {
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
}

static void serve(Database &db) {
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) throw std::runtime_error("uv_loop_init failed");

    // The LLM thread writes here to wake the worker.
    int wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd < 0) throw std::runtime_error("eventfd failed");
    LlmClient llm(wake_fd);
    Generations generations(db, llm);
    // The JWKS fetch thread writes the same eventfd.
    JwksFetcher jwks_fetcher(wake_fd);
    JwtKeys keys([&jwks_fetcher](const std::string &url, uint64_t generation) {
        if (url.empty())
            jwks_fetcher.cancel();
        else
            jwks_fetcher.fetch(url, generation);
    });

    SessionHub hub(db, generations, keys, MyProcPid);
    Server server(&loop, hub);
    hub.attach(&server);
    char share_path[MAXPGPATH];
    get_share_path(my_exec_path, share_path);
    server.endpoints().set_page_path(std::string(share_path) + "/extension/resumable_ws/chat.html");
    server.endpoints().set_client_library_path(std::string(share_path) + "/extension/resumable_ws/client.js");
    server.endpoints().set_markdown_renderer_path(std::string(share_path) + "/extension/resumable_ws/markdown-it.mjs");

    // What this worker's previous life left; the other workers' rows stay.
    std::vector<int> others = other_worker_pids();
    if (!db.transact([&others](EventLog &log) { log.clear_live_connections(others); }))
        throw std::runtime_error("cannot clear ws_live_connections");
    // Before any new message: what a restart cut off is finished first. A
    // failure here (a lock held by DDL, or tables from an older build) is
    // retried rather than crash-looping the worker.
    for (bool announced = false; !generations.recover();) {
        if (!announced)
            elog(LOG,
                 "resumable_ws: cannot read resumable_ws.ws_generations yet; retrying (an extension "
                 "created by an older build of this library needs DROP EXTENSION and CREATE EXTENSION)");
        announced = true;
        if (!pause(1000)) return;
    }
    llm.start();
    jwks_fetcher.start();
    configure_keys(keys, hub);
    raise_file_limit();
    // TLS asked for but unusable: nothing is served (never plain text in its
    // place) until the files or settings are fixed; retried every 5 s and on
    // SIGHUP, logged when the reason changes.
    for (std::string logged;;) {
        std::string error = server.prepare_tls();
        if (error.empty()) break;
        if (error != logged)
            elog(WARNING, "resumable_ws: not serving: %s (retrying every 5 s and on reload)", error.c_str());
        logged = error;
        if (!pause(5000)) return;
        configure_keys(keys, hub);  // the reload that fixed TLS may have changed the keys too
    }
    server.start();
    if (server.tls_on())
        elog(LOG, "resumable_ws: serving wss://%s:%d/ws for database \"%s\" (TLS certificate %s)",
             settings.listen_addresses, settings.port, settings.database, server.tls_certificate().c_str());
    else
        elog(LOG, "resumable_ws: serving ws://%s:%d/ws for database \"%s\"", settings.listen_addresses, settings.port,
             settings.database);

    WaitEventSet *wait_set = nullptr;
    pg_guard([&]() noexcept {
        wait_set = CreateWaitEventSet(TopMemoryContext, 4);
        AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, nullptr);
        AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, nullptr, nullptr);
        AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, uv_backend_fd(&loop), nullptr, nullptr);
        AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, wake_fd, nullptr, nullptr);
    });

    std::vector<Wake> wakes;
    std::vector<JwksFetchResult> fetched;
    auto next_tick = Clock::now();
    bool restart = false;  // TLS was switched on or off: the worker restarts
    while (!shutdown_requested && !restart) {
        // Sleep no longer than libuv's next timer, pending work, or the
        // once-a-second heartbeat/expiry tick allow.
        auto now = Clock::now();
        long timeout =
            std::max<long>(0, std::chrono::duration_cast<std::chrono::milliseconds>(next_tick - now).count());
        int uv_timeout = uv_backend_timeout(&loop);
        if (uv_timeout >= 0) timeout = std::min<long>(timeout, uv_timeout);
        int hub_timeout = hub.idle_timeout_ms();
        if (hub_timeout >= 0) timeout = std::min<long>(timeout, hub_timeout);

        WaitEvent events[4];
        int count = WaitEventSetWait(wait_set, timeout, events, 4, PG_WAIT_EXTENSION);
        for (int i = 0; i < count; i++) {
            if (events[i].events & WL_LATCH_SET) ResetLatch(MyLatch);
            if (events[i].fd == wake_fd) {
                uint64_t ignored;
                while (read(wake_fd, &ignored, sizeof(ignored)) > 0) {
                }
            }
        }
        check_for_interrupts();
        if (reload_settings_if_asked()) {
            configure_keys(keys, hub);
            tls::Reload reloaded = server.reload_tls();
            if (reloaded.outcome != tls::Reload::Unchanged)
                elog(reloaded.outcome == tls::Reload::Kept ? WARNING : LOG, "resumable_ws: %s",
                     reloaded.message.c_str());
            // The listening sockets' mode is fixed when they are made: the
            // worker ends like at SIGTERM (clients are told to come back) and
            // the postmaster starts it again a second later.
            restart = reloaded.outcome == tls::Reload::Restart;
        }

        fetched.clear();
        jwks_fetcher.drain(fetched);
        if (!fetched.empty()) {
            KeysLog log;
            bool ended = false;
            for (auto &result : fetched)
                if (keys.fetched(std::move(result), Clock::now(), log)) ended = true;
            log_keys(log);
            if (ended) hub.keys_refreshed();
        }

        auto pass_start = Clock::now();
        uv_run(&loop, UV_RUN_NOWAIT);

        wakes.clear();
        bool overflowed = drain_wakes(worker_slot, wakes);
        hub.sessions_changed(wakes, overflowed);
        hub.pass();
        report_table_stats(false);

        now = Clock::now();
        metrics().pass_duration.observe(kDurationBuckets, now - pass_start);
        // Gauges: stored by this worker, summed over workers when read.
        worker_gauges().connections.store(static_cast<int64_t>(server.connection_count()), std::memory_order_relaxed);
        worker_gauges().llm_queue_length.store(static_cast<int64_t>(generations.queued_count()),
                                               std::memory_order_relaxed);
        if (now >= next_tick) {
            server.tick(now, time(nullptr));
            hub.record_last_seen(now);
            hub.refresh_connection_records();
            hub.expire_key_waits(now);
            keys.tick(now);
            report_table_stats(true);
            next_tick = now + std::chrono::seconds(1);
        }
        server.flush();
    }

    // Shutdown: accept nothing new, commit and answer what clients already
    // sent, end running generations as interrupted (without waiting on any
    // upstream), deliver it all, then tell every client to come back, and
    // give the close frames a moment.
    server.stop_accepting();
    uv_run(&loop, UV_RUN_NOWAIT);
    hub.pass();
    generations.interrupt_all();
    hub.pass();  // frames held until ready were queued by the first pass's answers
    hub.announce_restart();
    server.flush();
    auto deadline = Clock::now() + std::chrono::milliseconds(1500);
    while (server.connection_count() > 0 && Clock::now() < deadline) {
        uv_run(&loop, UV_RUN_NOWAIT);
        server.flush();
        WaitEvent ignored[4];  // epoll_wait refuses a zero-sized array
        (void)WaitEventSetWait(wait_set, 10, ignored, 4, PG_WAIT_EXTENSION);
    }
    elog(LOG, "resumable_ws: worker shutting down with %zu connections left", server.connection_count());
}

}  // namespace rws

extern "C" void rws_worker_main(Datum main_arg) {
    using namespace rws;
    pqsignal(SIGTERM, handle_sigterm);
    pqsignal(SIGHUP, SignalHandlerForConfigReload);
    BackgroundWorkerUnblockSignals();
    mark_worker_process();
    BackgroundWorkerInitializeConnection(settings.database, nullptr, 0);

    configure_session();

    worker_slot = claim_worker_slot(DatumGetInt32(main_arg), MyDatabaseId);
    if (worker_slot == nullptr) ereport(FATAL, (errmsg("resumable_ws: no worker slot %d", DatumGetInt32(main_arg))));
    on_proc_exit(release_slot_at_exit, 0);

    char failure[512] = {0};
    try {
        Database db;
        if (wait_for_extension(db)) serve(db);
    } catch (const std::exception &e) {
        strlcpy(failure, e.what(), sizeof(failure));
    } catch (...) {
        // Nothing may unwind into the postmaster's C frames.
        strlcpy(failure, "unknown exception", sizeof(failure));
    }
    if (failure[0] != '\0') ereport(FATAL, (errmsg("resumable_ws: worker stopped: %s", failure)));
    // Exit code 1: the postmaster starts the worker again (unless it is
    // shutting down itself).
    proc_exit(1);
}
