#include "connection_records.hpp"

#include <cstring>
#include <new>

#include "cpp_only.hpp"  // must be last: no Postgres in this file

namespace rws {

static_assert(std::atomic<uint32_t>::is_always_lock_free && std::atomic<int32_t>::is_always_lock_free,
              "atomics in shared memory must be lock-free");

static ConnectionTable *table_ = nullptr;
static int32_t owner_ = 0;       // this worker's slot + 1
static uint32_t next_free_ = 0;  // where the search for a free record starts

size_t connection_table_size(uint32_t capacity) {
    return offsetof(ConnectionTable, records) + sizeof(ConnectionRecord) * (capacity == 0 ? 1 : capacity);
}

void init_connection_table(ConnectionTable *table, uint32_t capacity) {
    memset(static_cast<void *>(table), 0, connection_table_size(capacity));
    table->capacity = capacity;
    for (uint32_t i = 0; i < capacity; i++) new (&table->records[i]) ConnectionRecord();
}

void use_connection_table(ConnectionTable *table, int worker_slot) {
    table_ = table;
    owner_ = worker_slot + 1;
}

ConnectionTable *connection_table() {
    return table_;
}

void write_connection_record(int index, const ConnectionFields &fields) {
    if (table_ == nullptr || index < 0 || static_cast<uint32_t>(index) >= table_->capacity) return;
    ConnectionRecord &record = table_->records[index];
    uint32_t changes = record.changes.load(std::memory_order_relaxed);
    record.changes.store(changes + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);  // odd before the fields change
    memcpy(static_cast<void *>(&record.fields), &fields, sizeof(fields));
    record.changes.store(changes + 2, std::memory_order_release);  // fields before even
}

int claim_connection_record(const ConnectionFields &fields) {
    if (table_ == nullptr || owner_ == 0) return -1;
    uint32_t capacity = table_->capacity;
    for (uint32_t n = 0; n < capacity; n++) {
        uint32_t i = (next_free_ + n) % capacity;
        int32_t expected = 0;
        if (table_->records[i].owner.load(std::memory_order_relaxed) != 0) continue;
        if (!table_->records[i].owner.compare_exchange_strong(expected, owner_)) continue;
        next_free_ = (i + 1) % capacity;
        write_connection_record(static_cast<int>(i), fields);
        return static_cast<int>(i);
    }
    return -1;
}

void release_connection_record(int index) {
    if (table_ == nullptr || index < 0 || static_cast<uint32_t>(index) >= table_->capacity) return;
    write_connection_record(index, ConnectionFields());
    table_->records[index].owner.store(0, std::memory_order_release);
    if (static_cast<uint32_t>(index) < next_free_) next_free_ = static_cast<uint32_t>(index);
}

void release_slot_records() {
    if (table_ == nullptr) return;
    for (uint32_t i = 0; i < table_->capacity; i++)
        if (table_->records[i].owner.load(std::memory_order_relaxed) == owner_)
            release_connection_record(static_cast<int>(i));
    next_free_ = 0;
}

std::vector<ConnectionFields> read_connection_records(const ConnectionTable *table) {
    std::vector<ConnectionFields> out;
    if (table == nullptr) return out;
    size_t in_use = 0;
    for (uint32_t i = 0; i < table->capacity; i++)
        if (table->records[i].owner.load(std::memory_order_relaxed) != 0) in_use++;
    out.reserve(in_use + 16);  // a few may be claimed meanwhile
    for (uint32_t i = 0; i < table->capacity; i++) {
        const ConnectionRecord &record = table->records[i];
        if (record.owner.load(std::memory_order_relaxed) == 0) continue;
        ConnectionFields copy;
        bool consistent = false;
        // A write is a few stores: retry a bounded number of times (a record
        // never stays odd, but a reader must not spin on one if it did).
        for (int attempt = 0; attempt < 10000 && !consistent; attempt++) {
            uint32_t before = record.changes.load(std::memory_order_acquire);
            if (before & 1) continue;
            memcpy(static_cast<void *>(&copy), static_cast<const void *>(&record.fields), sizeof(copy));
            std::atomic_thread_fence(std::memory_order_acquire);  // the copy before the second read
            consistent = record.changes.load(std::memory_order_relaxed) == before;
        }
        if (!consistent || copy.worker_pid == 0) continue;
        copy.user_id[sizeof(copy.user_id) - 1] = '\0';
        copy.session_id[sizeof(copy.session_id) - 1] = '\0';
        copy.remote_addr[sizeof(copy.remote_addr) - 1] = '\0';
        out.push_back(copy);
    }
    return out;
}

}  // namespace rws
