#include "pg.hpp"
#include "settings.hpp"

#include "address_filter.hpp"
#include "jwks.hpp"

extern "C" {
#include "utils/guc.h"
}

namespace rws {

Settings settings;

static const struct config_enum_entry llm_provider_options[] = {
    {"openai", LLM_PROVIDER_OPENAI, false},
    {"echo", LLM_PROVIDER_ECHO, false},
    {"none", LLM_PROVIDER_NONE, false},
    {nullptr, 0, false},
};

// metrics_addresses must be a list of addresses and networks: a typo is
// refused at SET or reload (the old value stays), never silently ignored.
static bool parse_addresses(const char *value, char *error, size_t error_size) noexcept {
    try {
        AddressFilter filter;
        std::string why;
        if (filter.parse(value ? value : "", why)) return true;
        strlcpy(error, why.c_str(), error_size);
    } catch (...) {
        strlcpy(error, "cannot parse the list", error_size);
    }
    return false;
}

static bool check_metrics_addresses(char **newval, void **, GucSource) {
    char error[256];
    if (parse_addresses(*newval, error, sizeof(error))) return true;
    GUC_check_errdetail("%s", error);
    GUC_check_errhint("A comma-separated list of IP addresses and CIDR networks, such as 127.0.0.1/32,::1/128.");
    return false;
}

// What is wrong with an inline JWKS, into problem; false when nothing is.
// No C++ object outlives this function, so the check hook may then ereport.
static bool jwks_problem(const char *document, char *problem, size_t size) noexcept {
    try {
        JwksParse parse = parse_jwks(document);
        if (!parse.keys) {
            strlcpy(problem, parse.error.c_str(), size);
            return true;
        }
        if (parse.private_key) {
            // This setting is readable by every role: a private key in it is
            // already disclosed; refusing it keeps it out of the files.
            strlcpy(problem, "it holds private key material (d, p, q, k, …): give only public keys", size);
            return true;
        }
        return false;
    } catch (...) {
        strlcpy(problem, "it could not be read", size);
        return true;
    }
}

// resumable_ws.jwt_jwks must be a JWKS of public keys: a bad value is refused
// where it is set (ALTER SYSTEM, or a reload that keeps the old value).
static bool check_jwt_jwks(char **newval, void **, GucSource) {
    if (*newval == nullptr || (*newval)[0] == '\0') return true;
    char problem[256];
    if (!jwks_problem(*newval, problem, sizeof(problem))) return true;
    // Not Postgres's default message, which would quote the value (and so
    // any private key in it) into the server log.
    GUC_check_errmsg("invalid value for parameter \"resumable_ws.jwt_jwks\"");
    GUC_check_errdetail("%s", problem);
    return false;
}

void define_settings() {
    DefineCustomStringVariable("resumable_ws.listen_addresses", "Addresses the WebSocket/HTTP server binds.",
                               "Comma-separated host names or IP addresses; '*' for all.", &settings.listen_addresses,
                               "localhost", PGC_POSTMASTER, 0, nullptr, nullptr, nullptr);
    DefineCustomIntVariable("resumable_ws.port", "TCP port of the WebSocket/HTTP server.", nullptr, &settings.port,
                            8787, 1, 65535, PGC_POSTMASTER, 0, nullptr, nullptr, nullptr);
    DefineCustomStringVariable("resumable_ws.database", "Database whose resumable_ws schema the worker serves.",
                               nullptr, &settings.database, "postgres", PGC_POSTMASTER, 0, nullptr, nullptr, nullptr);
    DefineCustomIntVariable("resumable_ws.workers", "Worker processes serving the port.",
                            "They share the port (SO_REUSEPORT); the kernel spreads new connections over them.",
                            &settings.workers, 1, 1, kMaxWorkers, PGC_POSTMASTER, 0, nullptr, nullptr, nullptr);

    DefineCustomStringVariable("resumable_ws.jwt_secret", "HS256 key that client tokens are signed with.",
                               "The raw secret string, as Supabase's JWT secret.", &settings.jwt_secret, "", PGC_SIGHUP,
                               GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL, nullptr, nullptr, nullptr);
    DefineCustomStringVariable("resumable_ws.jwt_audience", "Required aud claim of client tokens; empty: not checked.",
                               nullptr, &settings.jwt_audience, "authenticated", PGC_SIGHUP, 0, nullptr, nullptr,
                               nullptr);
    DefineCustomStringVariable(
        "resumable_ws.jwt_jwks_url", "URL of a JSON Web Key Set whose ES256 and RS256 keys verify client tokens.",
        "Such as Supabase's https://<project>.supabase.co/auth/v1/.well-known/jwks.json; keys are chosen by kid.",
        &settings.jwt_jwks_url, "", PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
    DefineCustomStringVariable("resumable_ws.jwt_jwks", "An inline JSON Web Key Set (public keys only).",
                               "Used beside jwt_jwks_url and jwt_secret.", &settings.jwt_jwks, "", PGC_SIGHUP, 0,
                               check_jwt_jwks, nullptr, nullptr);
    DefineCustomStringVariable("resumable_ws.jwt_issuer", "Required iss claim of client tokens; empty: not checked.",
                               nullptr, &settings.jwt_issuer, "", PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
    DefineCustomStringVariable("resumable_ws.ssl_cert_file", "PEM certificate chain of the HTTPS/WSS server.",
                               "When set with ssl_key_file, the server speaks only TLS; reloaded on SIGHUP.",
                               &settings.ssl_cert_file, "", PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
    DefineCustomStringVariable("resumable_ws.ssl_key_file", "PEM private key for ssl_cert_file.", nullptr,
                               &settings.ssl_key_file, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY, nullptr, nullptr, nullptr);
    DefineCustomStringVariable("resumable_ws.metrics_addresses", "Client networks allowed to read GET /metrics.",
                               "Comma-separated addresses or CIDR networks; empty: nobody.",
                               &settings.metrics_addresses, "127.0.0.1/32,::1/128", PGC_SIGHUP, 0,
                               check_metrics_addresses, nullptr, nullptr);
    DefineCustomBoolVariable("resumable_ws.anonymous_sign_in", "Enables POST /auth/anonymous.", nullptr,
                             &settings.anonymous_sign_in, false, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
    DefineCustomIntVariable(
        "resumable_ws.anonymous_sign_ins_per_minute", "Anonymous sign-ins allowed per client address per minute.",
        "Up to this many at once, then this many a minute; IPv6 addresses count per /64. More get HTTP 429.",
        &settings.anonymous_sign_ins_per_minute, 30, 1, 100000, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
    DefineCustomIntVariable("resumable_ws.anonymous_token_ttl", "Lifetime of the tokens POST /auth/anonymous issues.",
                            "When a token expires its anonymous user cannot come back: a new sign-in is a new user.",
                            &settings.anonymous_token_ttl_s, 24 * 3600, 60, 365 * 24 * 3600, PGC_SIGHUP, GUC_UNIT_S,
                            nullptr, nullptr, nullptr);

    DefineCustomEnumVariable(
        "resumable_ws.llm_provider", "Where generations come from: openai, echo (offline demo) or none.",
        "none: user messages are stored and acknowledged, and nothing answers them.", &settings.llm_provider,
        LLM_PROVIDER_OPENAI, llm_provider_options, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
    DefineCustomStringVariable("resumable_ws.llm_base_url", "Base URL of the OpenAI-compatible API.",
                               "/chat/completions is appended.", &settings.llm_base_url, "https://api.openai.com/v1",
                               PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
    DefineCustomStringVariable("resumable_ws.llm_api_key", "Bearer key for the LLM API.",
                               "When empty, the postmaster's OPENAI_API_KEY environment variable.",
                               &settings.llm_api_key, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL, nullptr,
                               nullptr, nullptr);
    DefineCustomStringVariable("resumable_ws.llm_model", "Model name sent upstream.", nullptr, &settings.llm_model,
                               "gpt-4o-mini", PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
    DefineCustomStringVariable("resumable_ws.llm_system_prompt", "System message sent first in every upstream request.",
                               "Empty: none.", &settings.llm_system_prompt, "", PGC_SIGHUP, 0, nullptr, nullptr,
                               nullptr);
    DefineCustomIntVariable("resumable_ws.llm_context_messages",
                            "Earlier user and assistant messages sent upstream as context.", nullptr,
                            &settings.llm_context_messages, 20, 0, 1000, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
    DefineCustomIntVariable("resumable_ws.llm_max_concurrency",
                            "Generations streaming at once; the rest wait in order.", nullptr,
                            &settings.llm_max_concurrency, 100, 1, 100000, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
    DefineCustomIntVariable("resumable_ws.llm_connect_timeout", "Time allowed to connect to the LLM API.", nullptr,
                            &settings.llm_connect_timeout_ms, 10000, 100, 600 * 1000, PGC_SIGHUP, GUC_UNIT_MS, nullptr,
                            nullptr, nullptr);
    DefineCustomIntVariable(
        "resumable_ws.llm_idle_timeout", "Longest silence from the LLM API before a generation fails.",
        "Counted from the request until the first byte, then between bytes.", &settings.llm_idle_timeout_ms, 60000, 100,
        3600 * 1000, PGC_SIGHUP, GUC_UNIT_MS, nullptr, nullptr, nullptr);
    DefineCustomIntVariable("resumable_ws.llm_max_retries",
                            "Retries of a failed upstream request before its first token.",
                            "Connection failures, 429 and 5xx answers are retried with backoff.",
                            &settings.llm_max_retries, 3, 0, 10, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);

    DefineCustomIntVariable("resumable_ws.heartbeat_interval", "WebSocket ping interval.",
                            "A connection silent for three intervals is closed.", &settings.heartbeat_interval_ms,
                            10000, 1000, 3600 * 1000, PGC_SIGHUP, GUC_UNIT_MS, nullptr, nullptr, nullptr);
    DefineCustomIntVariable("resumable_ws.max_message_size", "Largest client message accepted (close 1009 above).",
                            nullptr, &settings.max_message_size, 64 * 1024, 1024, 64 * 1024 * 1024, PGC_SIGHUP,
                            GUC_UNIT_BYTE, nullptr, nullptr, nullptr);
    DefineCustomIntVariable("resumable_ws.max_connections", "Most WebSocket connections served at once.",
                            "Upgrades beyond it are refused with HTTP 503.", &settings.max_connections, 10000, 1,
                            1000000, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
    DefineCustomIntVariable(
        "resumable_ws.max_send_buffer", "Bytes queued for one connection before it is closed with 4010.",
        "Events are fed to a connection only while less than a quarter of this is queued.", &settings.max_send_buffer,
        4 * 1024 * 1024, 64 * 1024, 1024 * 1024 * 1024, PGC_SIGHUP, GUC_UNIT_BYTE, nullptr, nullptr, nullptr);
    DefineCustomIntVariable("resumable_ws.max_messages_per_second",
                            "Client messages accepted per connection per second (close 1008 above).",
                            "Bursts of up to twice this are allowed.", &settings.max_messages_per_second, 50, 1, 100000,
                            PGC_SIGHUP, 0, nullptr, nullptr, nullptr);

    DefineCustomIntVariable(
        "resumable_ws.max_event_size", "Largest event (payload as JSON text plus event_type) that may enter a log.",
        "publish() refuses larger events; answers are cut off (finish_reason length) before they grow larger. "
        "Never more than max_send_buffer less 4 kB.",
        &settings.max_event_size, 1024 * 1024, 1024, 1024 * 1024 * 1024, PGC_SIGHUP, GUC_UNIT_BYTE, nullptr, nullptr,
        nullptr);

    MarkGUCPrefixReserved("resumable_ws");
}

}  // namespace rws
