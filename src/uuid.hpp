// UUID text helpers shared by auth, protocol and the worker.
#pragma once

#include <string>

namespace rws {

// Accepts the canonical 8-4-4-4-12 hex form in any case; writes it lowercased.
bool parse_uuid(const std::string &text, std::string &canonical);
// A random (version 4) UUID from OpenSSL's CSPRNG.
std::string random_uuid();

}  // namespace rws
