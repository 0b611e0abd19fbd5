// Which worker runs a session's generations: the one holding the session's
// owner lock, a session-level advisory lock (it outlives transactions, and
// Postgres releases it when the process exits). A worker that takes the
// lock and finds a generation 'running' that it does not run knows its
// runner died: no clock, no heartbeat. Held only while the worker has a
// generation of the session queued or running.
//
// In pg_locks: locktype 'advisory', objsubid kOwnerLockClass (user advisory
// locks use 1 and 2, so they never collide), classid/objid 64 bits of the
// session id. Call inside a transaction.
#pragma once

#include <string>

namespace rws {

constexpr int kOwnerLockClass = 0x5257;

// True if this process now holds the session's owner lock; false if another
// one does. Never waits.
bool try_own_session(const std::string &session_id);
void disown_session(const std::string &session_id);

}  // namespace rws
