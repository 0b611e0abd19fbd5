// The extension's settings (GUCs), read by the worker on every use so that a
// SIGHUP reload takes effect without dropping connections.
#pragma once

#include <cstddef>

namespace rws {

enum LlmProvider { LLM_PROVIDER_OPENAI = 0, LLM_PROVIDER_ECHO = 1, LLM_PROVIDER_NONE = 2 };

struct Settings {
    // postmaster
    char *listen_addresses;
    int port;
    char *database;
    int workers;  // worker processes sharing the port
    // sighup
    char *jwt_secret;  // superuser-only
    char *jwt_audience;
    char *jwt_jwks_url;  // a JWKS to fetch (ES256/RS256 keys by kid)
    char *jwt_jwks;      // the same, inline
    char *jwt_issuer;    // required iss; empty: not checked
    char *ssl_cert_file;
    char *ssl_key_file;       // superuser-only
    char *metrics_addresses;  // networks allowed to GET /metrics
    bool anonymous_sign_in;
    int anonymous_sign_ins_per_minute;  // per client address
    int anonymous_token_ttl_s;
    int llm_provider;
    char *llm_base_url;
    char *llm_api_key;  // superuser-only
    char *llm_model;
    char *llm_system_prompt;
    int llm_context_messages;
    int llm_max_concurrency;
    int llm_connect_timeout_ms;
    int llm_idle_timeout_ms;
    int llm_max_retries;
    int heartbeat_interval_ms;
    int max_message_size;  // bytes
    int max_connections;
    int max_send_buffer;  // bytes queued per connection before close 4010
    int max_messages_per_second;
    int max_event_size;  // bytes; see event_size_limit()
};

extern Settings settings;

// Room for the rest of an event frame around its payload and type.
constexpr int kEventFrameOverhead = 4096;

// The largest event (payload as JSON text plus event_type, in bytes) that may
// enter a log: max_event_size, and never more than fits in a connection's
// send buffer, so that no event can wedge a session.
inline size_t event_size_limit() {
    int fits = settings.max_send_buffer - kEventFrameOverhead;
    return static_cast<size_t>(settings.max_event_size < fits ? settings.max_event_size : fits);
}

// Most workers resumable_ws.workers may ask for (shared-memory slots).
constexpr int kMaxWorkers = 8;

void define_settings();

}  // namespace rws
