// Shared memory between backends that publish and the worker that delivers.
// Each worker owns a slot: its latch, its database, and a ring of session ids
// changed by committed transactions. Backends push into the ring at commit and
// set the latch; the worker drains it. The tables stay the only source of
// truth: the ring is a hint of where to look, and an overflow means "look at
// every live session".
#pragma once

#include "pg.hpp"
#include "settings.hpp"
#include "wake.hpp"

extern "C" {
#include "storage/latch.h"
#include "storage/spin.h"
#include "utils/uuid.h"
}

#include <vector>

namespace rws {

constexpr int kWakeRingSize = 8192;

struct WorkerSlot {
    slock_t mutex;
    pid_t pid;         // 0: free
    Oid database_oid;  // database the worker serves
    Latch *latch;
    uint32 head, tail;  // ring indices; head == tail: empty
    bool overflowed;
    Wake ring[kWakeRingSize];
    // llm_max_concurrency across workers (SharedState::generations_mutex).
    uint32 generations_in_use;   // started, or about to start
    bool wants_generations;      // got fewer than it asked for
    bool generation_slot_freed;  // another worker freed one since
};

struct SharedState {
    WorkerSlot slots[kMaxWorkers];
    slock_t generations_mutex;  // every slot's generations_* fields
};

void request_shared_state();  // from shmem_request_hook
void attach_shared_state();   // from shmem_startup_hook

// Worker side: worker index (0 .. workers - 1) uses slot index.
WorkerSlot *claim_worker_slot(int index, Oid database_oid);
// The pids of the other workers now serving this database.
std::vector<int> other_worker_pids();
void release_worker_slot(WorkerSlot *slot);
// Moves the woken sessions out of the ring; returns true if the ring overflowed
// since the last drain (then every live session must be re-read).
bool drain_wakes(WorkerSlot *slot, std::vector<Wake> &out);

// True in the worker process (set once it starts). Its own writes wake no
// one: it delivers them itself after its commit.
bool is_worker_process();
void mark_worker_process();

// Backend side: remember a session changed by this transaction; pushed to the
// worker serving this database when (and only if) the transaction commits.
void wake_at_commit(const pg_uuid_t &session_id, bool closed);
// Counts one event inserted by this backend; added to the published events
// (rws_events_appended_total{source="publish"}) when, and only if, it commits.
void count_published_event();
void register_commit_callback();

}  // namespace rws
