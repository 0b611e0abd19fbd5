// Included last by every file that must stay free of Postgres: code that runs
// on the LLM thread or inside libwebsockets callbacks, where an ereport's
// longjmp would skip C++ destructors and a palloc is not allowed. Such a file
// fails to compile if a Postgres header came in before this one (directly or
// through another header). Files that call Postgres include pg.hpp instead.
// (pg_duckdb's cpp_only_file.hpp is the model.)
#pragma once

#if defined(POSTGRES_H) || defined(C_H) || defined(FMGR_H) || defined(PG_CONFIG_H)
#error "a Postgres header is included in a file that must be pure C++ (see cpp_only.hpp)"
#endif
