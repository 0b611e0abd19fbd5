#include "session_owner.hpp"

#include "pg.hpp"
#include "uuid.hpp"

extern "C" {
#include "miscadmin.h"
#include "storage/lock.h"
}

#include <stdexcept>

namespace rws {

// The 128-bit id folded into the tag's two 32-bit fields.
static LOCKTAG owner_tag(const std::string &session_id) {
    unsigned char b[16];
    if (!uuid_bytes(session_id, b)) throw std::invalid_argument("not a session id");
    auto word = [&b](int at) {
        return (uint32)b[at] << 24 | (uint32)b[at + 1] << 16 | (uint32)b[at + 2] << 8 | (uint32)b[at + 3];
    };
    LOCKTAG tag;
    SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, word(0) ^ word(8), word(4) ^ word(12), kOwnerLockClass);
    return tag;
}

bool try_own_session(const std::string &session_id) {
    LOCKTAG tag = owner_tag(session_id);
    LockAcquireResult result = LOCKACQUIRE_NOT_AVAIL;
    pg_guard([&]() noexcept {
        result = LockAcquire(&tag, ExclusiveLock, /*sessionLock=*/true, /*dontWait=*/true);
        // Held already (the caller lost track): keep one hold, not two.
        if (result == LOCKACQUIRE_ALREADY_HELD) LockRelease(&tag, ExclusiveLock, true);
    });
    return result != LOCKACQUIRE_NOT_AVAIL;
}

void disown_session(const std::string &session_id) {
    LOCKTAG tag = owner_tag(session_id);
    pg_guard([&]() noexcept { (void)LockRelease(&tag, ExclusiveLock, true); });
}

}  // namespace rws
