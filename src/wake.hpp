// A session changed by a committed transaction, as queued in shared memory.
// Plain bytes so that code without Postgres headers can read it.
#pragma once

namespace rws {

struct Wake {
    unsigned char session_id[16];  // pg_uuid_t's bytes
    bool closed;                   // hint: the session may have been closed (worker re-checks)
    bool cancel;                   // a client's cancel, from another worker: not a change of the log
};

}  // namespace rws
