#include "shared_state.hpp"

extern "C" {
#include "access/xact.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
}

namespace rws {

static SharedState *shared = nullptr;

void request_shared_state() {
    RequestAddinShmemSpace(sizeof(SharedState));
}

void attach_shared_state() {
    bool found;
    LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
    shared = static_cast<SharedState *>(ShmemInitStruct("resumable_ws", sizeof(SharedState), &found));
    if (!found) {
        memset(shared, 0, sizeof(SharedState));
        for (auto &slot : shared->slots) SpinLockInit(&slot.mutex);
    }
    LWLockRelease(AddinShmemInitLock);
}

WorkerSlot *claim_worker_slot(Oid database_oid) {
    for (auto &slot : shared->slots) {
        SpinLockAcquire(&slot.mutex);
        // A slot whose worker crashed is reused: the postmaster resets shared
        // memory after a crash, and a worker that exited released its slot.
        if (slot.pid == 0 || slot.database_oid == database_oid) {
            slot.pid = MyProcPid;
            slot.database_oid = database_oid;
            slot.latch = MyLatch;
            slot.head = slot.tail = 0;
            slot.overflowed = true;  // first drain re-reads everything
            SpinLockRelease(&slot.mutex);
            return &slot;
        }
        SpinLockRelease(&slot.mutex);
    }
    return nullptr;
}

void release_worker_slot(WorkerSlot *slot) {
    SpinLockAcquire(&slot->mutex);
    slot->pid = 0;
    slot->latch = nullptr;
    SpinLockRelease(&slot->mutex);
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
        pending_count++;
    } else {
        pending_overflowed = true;
    }
}

static void forget_pending() {
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
}

}  // namespace rws
