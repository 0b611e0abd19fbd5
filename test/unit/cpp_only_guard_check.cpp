// Must NOT compile (CppOnly test in CMakeLists.txt): a Postgres header in a
// file that declares itself pure C++ with cpp_only.hpp.
#include "pg.hpp"

#include "cpp_only.hpp"
