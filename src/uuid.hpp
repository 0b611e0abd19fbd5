// UUID text helpers shared by auth, protocol and the worker.
#pragma once

#include <string>

namespace rws {

// Accepts the canonical 8-4-4-4-12 hex form in any case; writes it lowercased.
bool parse_uuid(const std::string &text, std::string &canonical);
// The 16 bytes of a UUID in the canonical text form (as parse_uuid writes
// it, or as Postgres prints one); false if text is not one.
bool uuid_bytes(const std::string &text, unsigned char out[16]);
// A random (version 4) UUID from OpenSSL's CSPRNG.
std::string random_uuid();

}  // namespace rws
