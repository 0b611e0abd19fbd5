// What a worker tells the other workers serving its database, through their
// shared-memory slots (shared_state.cpp). Pure C++ for the worker's logic;
// every call is a no-op outside a worker.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace rws::peers {

// After this worker's commit: wakes every other worker for these sessions
// (they read the log for connections they serve, and their generations
// look for new messages of sessions they own). A full ring falls back to
// "re-read everything" there, as for publish().
void wake_others(const std::vector<std::string> &session_ids);

// A client's cancel for a session whose answer this worker does not run:
// offered to the workers whose bit is set in to_tell (at first
// other_workers()); the bits of those that took it are cleared. A worker
// whose ring is full keeps its bit: call again on a later pass.
uint32_t other_workers();
void forward_cancel(const std::string &session_id, uint32_t &to_tell);

// The global llm_max_concurrency: how many more generations (at most
// wanted) this worker, which runs in_use, may start given what the others
// use; in_use plus that is recorded as this worker's use at once. A worker
// that got less than it wanted is woken when another frees a slot
// (generation_slot_freed()).
size_t reserve_generations(size_t in_use, size_t wanted, size_t limit);
// This worker now uses in_use slots (started generations).
void set_generation_usage(size_t in_use);
// True once after another worker freed a slot this one waited for.
bool generation_slot_freed();

}  // namespace rws::peers
