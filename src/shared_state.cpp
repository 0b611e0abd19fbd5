#include "shared_state.hpp"

#include "connection_records.hpp"
#include "metrics.hpp"
#include "settings.hpp"
#include "uuid.hpp"
#include "worker_peers.hpp"

#include <new>

extern "C" {
#include "access/xact.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
}

namespace rws {

static_assert(kMaxWorkers == kMaxWorkerSlots, "one set of gauges per worker slot");

static SharedState *shared = nullptr;

// Records for resumable_ws.connections(): max_connections as set at
// postmaster start (a later, higher setting serves more than are listed).
// Fixed when the space is requested: after a crash the postmaster attaches
// again with the settings of the moment, and a size larger than what was
// reserved would fail there, in the postmaster, and stop the cluster.
static uint32_t requested_connection_capacity = 0;

static uint32_t connection_capacity() {
    if (requested_connection_capacity == 0) {
        int wanted = settings.max_connections > 0 ? settings.max_connections : 1;
        requested_connection_capacity = static_cast<uint32_t>(wanted) < kMaxConnectionRecords
                                            ? static_cast<uint32_t>(wanted)
                                            : kMaxConnectionRecords;
    }
    return requested_connection_capacity;
}

void request_shared_state() {
    RequestAddinShmemSpace(sizeof(SharedState));
    RequestAddinShmemSpace(sizeof(SharedMetrics));
    RequestAddinShmemSpace(connection_table_size(connection_capacity()));
}

void attach_shared_state() {
    bool found;
    LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
    shared = static_cast<SharedState *>(ShmemInitStruct("resumable_ws", sizeof(SharedState), &found));
    if (!found) {
        memset(shared, 0, sizeof(SharedState));
        for (auto &slot : shared->slots) SpinLockInit(&slot.mutex);
        SpinLockInit(&shared->generations_mutex);
    }
    void *metrics_memory = ShmemInitStruct("resumable_ws metrics", sizeof(SharedMetrics), &found);
    if (!found) {
        memset(metrics_memory, 0, sizeof(SharedMetrics));
        new (metrics_memory) SharedMetrics();
    }
    use_shared_metrics(static_cast<SharedMetrics *>(metrics_memory));
    uint32_t capacity = connection_capacity();
    auto *table = static_cast<ConnectionTable *>(
        ShmemInitStruct("resumable_ws connections", connection_table_size(capacity), &found));
    if (!found) init_connection_table(table, capacity);
    use_connection_table(table, -1);
    LWLockRelease(AddinShmemInitLock);
}

static void use_slot(int index) {
    WorkerGauges &gauges = metrics().workers[index];
    gauges.connections.store(0, std::memory_order_relaxed);
    gauges.llm_queue_length.store(0, std::memory_order_relaxed);
    gauges.started_at.store(static_cast<int64_t>(time(nullptr)), std::memory_order_relaxed);
    use_worker_gauges(&gauges);
    use_connection_table(connection_table(), index);
    release_slot_records();  // what a previous worker of this slot left
}

static WorkerSlot *own_slot = nullptr;

WorkerSlot *claim_worker_slot(int index, Oid database_oid) {
    if (index < 0 || index >= kMaxWorkers) return nullptr;
    WorkerSlot &slot = shared->slots[index];
    // The slot of this worker's previous life: the postmaster starts worker
    // i again only after it exited (and released it), or resets shared
    // memory after a crash.
    SpinLockAcquire(&slot.mutex);
    slot.pid = MyProcPid;
    slot.database_oid = database_oid;
    slot.latch = MyLatch;
    slot.head = slot.tail = 0;
    slot.overflowed = true;  // first drain re-reads everything
    SpinLockRelease(&slot.mutex);
    SpinLockAcquire(&shared->generations_mutex);
    slot.generations_in_use = 0;
    slot.wants_generations = false;
    slot.generation_slot_freed = false;
    SpinLockRelease(&shared->generations_mutex);
    use_slot(index);
    own_slot = &slot;
    return &slot;
}

std::vector<int> other_worker_pids() {
    std::vector<int> pids;
    for (auto &slot : shared->slots) {
        if (&slot == own_slot) continue;
        SpinLockAcquire(&slot.mutex);
        int pid = slot.database_oid == MyDatabaseId ? slot.pid : 0;
        SpinLockRelease(&slot.mutex);
        if (pid != 0) pids.push_back(pid);
    }
    return pids;
}

void release_worker_slot(WorkerSlot *slot) {
    int index = static_cast<int>(slot - shared->slots);
    release_slot_records();
    metrics().workers[index].started_at.store(0, std::memory_order_relaxed);
    metrics().workers[index].connections.store(0, std::memory_order_relaxed);
    metrics().workers[index].llm_queue_length.store(0, std::memory_order_relaxed);
    SpinLockAcquire(&slot->mutex);
    slot->pid = 0;
    slot->latch = nullptr;
    SpinLockRelease(&slot->mutex);
    peers::set_generation_usage(0);
    own_slot = nullptr;
}

bool drain_wakes(WorkerSlot *slot, std::vector<Wake> &out) {
    // Room for a whole ring first: nothing may allocate (or throw) while the
    // spinlock is held.
    out.reserve(out.size() + kWakeRingSize);
    SpinLockAcquire(&slot->mutex);
    bool overflowed = slot->overflowed;
    slot->overflowed = false;
    while (slot->tail != slot->head) {
        out.push_back(slot->ring[slot->tail % kWakeRingSize]);
        slot->tail++;
    }
    SpinLockRelease(&slot->mutex);
    return overflowed;
}

// --- backend side -----------------------------------------------------------

static bool worker_process = false;
bool is_worker_process() {
    return worker_process;
}
void mark_worker_process() {
    worker_process = true;
}

// Sessions this transaction changed. Plain static storage: the commit callback
// runs where allocation is unwelcome, and a transaction rarely touches many.
constexpr int kPendingMax = 64;
static Wake pending[kPendingMax];
static int pending_count = 0;
static bool pending_overflowed = false;
static bool pending_any = false;

void wake_at_commit(const pg_uuid_t &session_id, bool closed) {
    pending_any = true;
    static_assert(sizeof(Wake::session_id) == sizeof(pg_uuid_t), "a Wake holds a uuid");
    for (int i = 0; i < pending_count; i++) {
        if (memcmp(pending[i].session_id, session_id.data, UUID_LEN) == 0) {
            pending[i].closed |= closed;
            return;
        }
    }
    if (pending_count < kPendingMax) {
        memcpy(pending[pending_count].session_id, session_id.data, UUID_LEN);
        pending[pending_count].closed = closed;
        pending[pending_count].cancel = false;
        pending_count++;
    } else {
        pending_overflowed = true;
    }
}

// Events inserted by this backend (publish() or INSERT), counted as
// published when the transaction commits. Per subtransaction, so that those
// of a rolled-back savepoint (or plpgsql EXCEPTION block) are not counted:
// subtransaction ids grow, and an aborting one takes every entry at or above
// its own id (its own and its children's). Past kEventCountsMax entries the
// newest entry absorbs the rest (a later rollback may then over-count).
struct EventCount {
    SubTransactionId subxact;
    uint64 events;
};
constexpr int kEventCountsMax = 32;
static EventCount event_counts[kEventCountsMax];
static int event_counts_used = 0;

void count_published_event() {
    SubTransactionId subxact = GetCurrentSubTransactionId();
    if (event_counts_used > 0 &&
        (event_counts[event_counts_used - 1].subxact == subxact || event_counts_used == kEventCountsMax)) {
        event_counts[event_counts_used - 1].events++;
        return;
    }
    event_counts[event_counts_used++] = EventCount{subxact, 1};
}

static void on_subxact_event(SubXactEvent event, SubTransactionId subxact, SubTransactionId, void *) {
    if (event != SUBXACT_EVENT_ABORT_SUB) return;
    while (event_counts_used > 0 && event_counts[event_counts_used - 1].subxact >= subxact) event_counts_used--;
}

static void count_committed_events() {
    uint64 events = 0;
    for (int i = 0; i < event_counts_used; i++) events += event_counts[i].events;
    if (events > 0) count(metrics().events_appended[kSourcePublish], events);
}

static void forget_pending() {
    event_counts_used = 0;
    pending_count = 0;
    pending_overflowed = false;
    pending_any = false;
}

static void push_pending_to_worker() {
    if (shared == nullptr) return;
    for (auto &slot : shared->slots) {
        Latch *latch = nullptr;
        SpinLockAcquire(&slot.mutex);
        if (slot.pid != 0 && slot.database_oid == MyDatabaseId) {
            for (int i = 0; i < pending_count && !slot.overflowed; i++) {
                if (slot.head - slot.tail >= (uint32)kWakeRingSize)
                    slot.overflowed = true;
                else
                    slot.ring[slot.head++ % kWakeRingSize] = pending[i];
            }
            if (pending_overflowed) slot.overflowed = true;
            latch = slot.latch;
        }
        SpinLockRelease(&slot.mutex);
        if (latch != nullptr) SetLatch(latch);
    }
}

static void on_xact_event(XactEvent event, void *) {
    if (!pending_any) return;
    switch (event) {
        case XACT_EVENT_COMMIT:
        case XACT_EVENT_PARALLEL_COMMIT:
            // Runs after the commit is visible to new snapshots.
            push_pending_to_worker();
            count_committed_events();
            forget_pending();
            break;
        case XACT_EVENT_ABORT:
        case XACT_EVENT_PARALLEL_ABORT: forget_pending(); break;
        case XACT_EVENT_PRE_PREPARE:
            // COMMIT PREPARED may run in another backend, which would not know
            // to wake the worker: refuse rather than deliver late.
            forget_pending();
            ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                            errmsg("resumable_ws: cannot PREPARE a transaction that published events "
                                   "or closed sessions")));
            break;
        default: break;
    }
}

void register_commit_callback() {
    RegisterXactCallback(on_xact_event, nullptr);
    RegisterSubXactCallback(on_subxact_event, nullptr);
}

// --- between workers (worker_peers.hpp) --------------------------------------

// Pushes wakes into another worker's ring and sets its latch. A full ring
// overflows (the worker re-reads everything), except for cancels, which are
// not a change of the log: those are refused (false) and offered again.
static bool push_to_slot(WorkerSlot &slot, const Wake *wakes, size_t count) {
    Latch *latch = nullptr;
    bool taken = true;
    SpinLockAcquire(&slot.mutex);
    if (slot.pid != 0 && slot.database_oid == MyDatabaseId) {
        for (size_t i = 0; i < count; i++) {
            if (slot.head - slot.tail < (uint32)kWakeRingSize) {
                slot.ring[slot.head++ % kWakeRingSize] = wakes[i];
            } else if (wakes[i].cancel) {
                taken = false;
            } else {
                slot.overflowed = true;
            }
        }
        latch = slot.latch;
    }
    SpinLockRelease(&slot.mutex);
    if (latch != nullptr) SetLatch(latch);
    return taken;
}

void peers::wake_others(const std::vector<std::string> &session_ids) {
    if (own_slot == nullptr || session_ids.empty() || settings.workers < 2) return;
    std::vector<Wake> wakes(session_ids.size());
    size_t n = 0;
    for (const std::string &id : session_ids) {
        Wake &wake = wakes[n];
        wake.closed = false;
        wake.cancel = false;
        if (uuid_bytes(id, wake.session_id)) n++;
    }
    for (auto &slot : shared->slots)
        if (&slot != own_slot) (void)push_to_slot(slot, wakes.data(), n);
}

uint32_t peers::other_workers() {
    uint32_t mask = 0;
    if (settings.workers < 2) return mask;
    for (int i = 0; i < kMaxWorkers; i++)
        if (&shared->slots[i] != own_slot) mask |= 1u << i;
    return mask;
}

void peers::forward_cancel(const std::string &session_id, uint32_t &to_tell) {
    Wake wake;
    wake.closed = false;
    wake.cancel = true;
    if (own_slot == nullptr || !uuid_bytes(session_id, wake.session_id)) {
        to_tell = 0;
        return;
    }
    for (int i = 0; i < kMaxWorkers; i++)
        if ((to_tell & (1u << i)) && push_to_slot(shared->slots[i], &wake, 1)) to_tell &= ~(1u << i);
}

size_t peers::reserve_generations(size_t in_use, size_t wanted, size_t limit) {
    auto more = [&](size_t others) {
        size_t used = others + in_use;
        return std::min(wanted, limit > used ? limit - used : 0);
    };
    if (own_slot == nullptr) return more(0);
    SpinLockAcquire(&shared->generations_mutex);
    size_t others = 0;
    for (auto &slot : shared->slots)
        if (&slot != own_slot) others += slot.generations_in_use;
    size_t granted = more(others);
    own_slot->generations_in_use = static_cast<uint32>(in_use + granted);
    own_slot->wants_generations = granted < wanted;
    SpinLockRelease(&shared->generations_mutex);
    return granted;
}

void peers::set_generation_usage(size_t in_use) {
    if (own_slot == nullptr) return;
    Latch *to_wake[kMaxWorkers];
    int n = 0;
    SpinLockAcquire(&shared->generations_mutex);
    bool freed = in_use < own_slot->generations_in_use;
    own_slot->generations_in_use = static_cast<uint32>(in_use);
    if (freed)
        for (auto &slot : shared->slots)
            if (&slot != own_slot && slot.wants_generations) {
                slot.wants_generations = false;
                slot.generation_slot_freed = true;
                to_wake[n++] = slot.latch;  // read without its mutex: set once, at claim
            }
    SpinLockRelease(&shared->generations_mutex);
    for (int i = 0; i < n; i++)
        if (to_wake[i] != nullptr) SetLatch(to_wake[i]);
}

bool peers::generation_slot_freed() {
    if (own_slot == nullptr) return false;
    SpinLockAcquire(&shared->generations_mutex);
    bool freed = own_slot->generation_slot_freed;
    own_slot->generation_slot_freed = false;
    SpinLockRelease(&shared->generations_mutex);
    return freed;
}

}  // namespace rws
