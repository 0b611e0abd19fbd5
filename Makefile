# PGXS build for resumable_ws. `make && make install`, then see README.md.
MODULE_big = resumable_ws
EXTENSION  = resumable_ws
DATA       = sql/resumable_ws--1.0.sql
PGFILEDESC = "resumable_ws - resumable WebSocket server inside PostgreSQL"

OBJS = \
	src/module.o \
	src/settings.o \
	src/shared_state.o \
	src/sql_functions.o \
	src/base64url.o \
	src/auth.o \
	src/jwks.o \
	src/jwks_fetcher.o \
	src/jwt_keys.o \
	src/uuid.o \
	src/sign_in_limiter.o \
	src/static_file.o \
	src/ws_frames.o \
	src/chat_page.o \
	src/protocol.o \
	src/http_checks.o \
	src/address_filter.o \
	src/prometheus.o \
	src/metrics.o \
	src/connection_records.o \
	src/stats_functions.o \
	src/llm_stream.o \
	src/llm_client.o \
	src/event_log.o \
	src/tls.o \
	src/listener.o \
	src/server.o \
	src/http_endpoints.o \
	src/database.o \
	src/session_owner.o \
	src/generations.o \
	src/session_hub.o \
	src/session_registry.o \
	src/client_protocol.o \
	src/request_batch.o \
	src/append_batch.o \
	src/delivery.o \
	src/worker.o

PG_CONFIG ?= pg_config

# Postgres's own headers are included as system headers: they are not clean
# under -Wconversion, and their warnings are not ours to fix.
PG_CPPFLAGS = -Isrc -isystem $(shell $(PG_CONFIG) --includedir-server)
# -MMD -MP: rebuild objects when a header they include changes (PGXS alone
# does not track headers, and a stale object with an old struct layout is a
# silent memory bug). Warnings are errors (WERROR= turns that off, e.g. for a
# newer compiler with new warnings).
WERROR ?= -Werror
PG_CXXFLAGS = -std=c++17 -Wno-register -Wextra -Wno-unused-parameter -Wno-missing-field-initializers \
	-Wshadow -Wconversion $(WERROR) -MMD -MP
SHLIB_LINK  = -lwebsockets -luv -lcurl -lssl -lcrypto -lstdc++

# pg_regress: inputs in test/sql, expected output in the top-level expected/
# (test/expected is a symlink to it: PG15's pg_regress has no --expecteddir).
REGRESS      = api privileges stats cleanup
REGRESS_OPTS = --inputdir=test --temp-config=test/regress.conf --temp-instance=$(TEMP_INSTANCE_DIR)
ISOLATION      = concurrent_publish
ISOLATION_OPTS = --inputdir=test --temp-config=test/regress.conf --temp-instance=$(TEMP_INSTANCE_DIR)
TEMP_INSTANCE_DIR ?= ./tmp_check

# Nothing in this library benefits from JIT inlining, and emitting LLVM bitcode
# for C++ would need a clang matching the server's LLVM: build no bitcode.
override with_llvm = no

EXTRA_CLEAN = $(OBJS:.o=.d) build

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

-include $(OBJS:.o=.d)

# The browser chat client, the client library and the page's Markdown
# renderer, served by the worker at GET /, GET /client.js and
# GET /vendor/markdown-it.mjs (read from here at each request after they
# change, so reinstalling them needs no restart). markdown-it comes from the
# npm registry at the version web/package-lock.json pins.
CHAT_PAGE_DIR = $(DESTDIR)$(datadir)/extension/resumable_ws
MARKDOWN_IT = web/node_modules/markdown-it/dist/browser/markdown-it.esm.min.mjs
all: $(MARKDOWN_IT)
$(MARKDOWN_IT): web/package.json web/package-lock.json
	@command -v npm >/dev/null || { echo "npm is needed to fetch markdown-it for the chat page (bash scripts/install-deps.sh installs it)" >&2; exit 1; }
	cd web && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@
install: install-chat-page
install-chat-page: $(MARKDOWN_IT)
	$(MKDIR_P) '$(CHAT_PAGE_DIR)'
	$(INSTALL_DATA) web/chat.html '$(CHAT_PAGE_DIR)/chat.html'
	$(INSTALL_DATA) clients/js/client.js '$(CHAT_PAGE_DIR)/client.js'
	$(INSTALL_DATA) $(MARKDOWN_IT) '$(CHAT_PAGE_DIR)/markdown-it.mjs'
uninstall: uninstall-chat-page
uninstall-chat-page:
	rm -f '$(CHAT_PAGE_DIR)/chat.html' '$(CHAT_PAGE_DIR)/client.js' '$(CHAT_PAGE_DIR)/markdown-it.mjs'
	rmdir '$(CHAT_PAGE_DIR)' 2>/dev/null || true
.PHONY: install-chat-page uninstall-chat-page


# Style (.clang-format, Debian's clang-format 14): `make format` rewrites the
# sources, `make format-check` (run by test/run.sh) fails on any difference.
FORMAT_SOURCES = $(wildcard src/*.cpp src/*.hpp test/unit/*.cpp test/fuzz/*.cpp)
CLANG_FORMAT ?= clang-format
format:
	$(CLANG_FORMAT) -i $(FORMAT_SOURCES)
format-check:
	$(CLANG_FORMAT) --dry-run --Werror $(FORMAT_SOURCES)
.PHONY: format format-check
