// One record per open WebSocket connection in shared memory, written by the
// worker that serves it and read by any backend (resumable_ws.connections()).
// A fixed array sized at postmaster start; each record is a seqlock: its
// writer makes the change counter odd, writes, makes it even again, and a
// reader retries until it copied the record between two equal even counts,
// so it never sees a torn record. Pure C++.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace rws {

// Beyond this many (or max_connections at start, if lower) connections are
// served but not listed.
constexpr uint32_t kMaxConnectionRecords = 65536;

struct ConnectionFields {
    int32_t worker_pid = 0;    // 0: free
    char user_id[37] = {};     // canonical UUID text
    char session_id[37] = {};  // empty until the session is open
    char remote_addr[64] = {};
    int64_t cursor = 0;           // newest event id queued to the connection
    int64_t queued_bytes = 0;     // bytes waiting to be sent
    int64_t connected_at_us = 0;  // Unix microseconds
};

struct ConnectionRecord {
    std::atomic<uint32_t> changes;  // odd while being written
    std::atomic<int32_t> owner;     // worker slot + 1 that claimed it; 0: free
    ConnectionFields fields;
};

struct ConnectionTable {
    uint32_t capacity;
    ConnectionRecord records[1];  // really capacity of them
};
size_t connection_table_size(uint32_t capacity);
void init_connection_table(ConnectionTable *table, uint32_t capacity);

// The table this process uses (nullptr: none; everything is a no-op).
void use_connection_table(ConnectionTable *table, int worker_slot);
ConnectionTable *connection_table();

// Worker side: a record for a new connection, or -1 if the table is full.
int claim_connection_record(const ConnectionFields &fields);
void write_connection_record(int index, const ConnectionFields &fields);
void release_connection_record(int index);
// Frees every record of this worker's slot (what a previous worker left).
void release_slot_records();

// Reader side: a consistent copy of every record in use.
std::vector<ConnectionFields> read_connection_records(const ConnectionTable *table);

}  // namespace rws
