// Library entry point: settings, shared memory, the commit callback, and the
// background worker. Only works when preloaded (shared_preload_libraries).
#include "pg.hpp"

#include "settings.hpp"
#include "shared_state.hpp"

extern "C" {
#include "postmaster/bgworker.h"
#include "storage/ipc.h"

PG_MODULE_MAGIC;
PGDLLEXPORT void _PG_init(void);
}

static shmem_request_hook_type previous_shmem_request_hook = nullptr;
static shmem_startup_hook_type previous_shmem_startup_hook = nullptr;

static void rws_shmem_request() {
    if (previous_shmem_request_hook) previous_shmem_request_hook();
    rws::request_shared_state();
}

static void rws_shmem_startup() {
    if (previous_shmem_startup_hook) previous_shmem_startup_hook();
    rws::attach_shared_state();
}

// Worker i (main_arg) uses shared-memory slot i.
static void register_worker(int index) {
    BackgroundWorker worker;
    memset(&worker, 0, sizeof(worker));
    worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
    worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
    // Exit code 1 (shutdown, fatal error) restarts it after this many seconds.
    worker.bgw_restart_time = 1;
    strlcpy(worker.bgw_library_name, "resumable_ws", BGW_MAXLEN);
    strlcpy(worker.bgw_function_name, "rws_worker_main", BGW_MAXLEN);
    snprintf(worker.bgw_name, BGW_MAXLEN, "resumable_ws worker %d", index);
    strlcpy(worker.bgw_type, "resumable_ws worker", BGW_MAXLEN);
    worker.bgw_main_arg = Int32GetDatum(index);
    RegisterBackgroundWorker(&worker);
}

extern "C" void _PG_init(void) {
    if (!process_shared_preload_libraries_in_progress)
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("resumable_ws can only be loaded via shared_preload_libraries"),
                        errhint("Add resumable_ws to shared_preload_libraries in postgresql.conf "
                                "and restart the server.")));

    rws::define_settings();
    rws::register_commit_callback();

    previous_shmem_request_hook = shmem_request_hook;
    shmem_request_hook = rws_shmem_request;
    previous_shmem_startup_hook = shmem_startup_hook;
    shmem_startup_hook = rws_shmem_startup;

    for (int i = 0; i < rws::settings.workers; i++) register_worker(i);
}
