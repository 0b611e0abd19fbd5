#include "http_endpoints.hpp"

#include "address_filter.hpp"
#include "auth.hpp"
#include "metrics.hpp"
#include "prometheus.hpp"
#include "settings.hpp"
#include "uuid.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <ctime>

#include "cpp_only.hpp"  // must be last: no Postgres in this file

namespace rws {

HttpResponse text_response(int status, const std::string &text, HttpHeaders headers) {
    HttpResponse response;
    response.status = status;
    response.content_type = "text/plain; charset=utf-8";
    response.headers = std::move(headers);
    response.body = text + "\n";
    return response;
}

HttpResponse json_response(int status, const std::string &json, HttpHeaders headers) {
    HttpResponse response;
    response.status = status;
    response.content_type = "application/json";
    response.headers = std::move(headers);
    response.headers.emplace_back("cache-control", "no-store");
    response.body = json;
    return response;
}

// Each of several workers allows its share of the limit: the kernel spreads
// one address's connections over them, so together they never allow more
// than the setting (an address whose requests land unevenly may be refused
// a little before it).
int HttpEndpoints::settings_per_minute() {
    return std::max(1, settings.anonymous_sign_ins_per_minute / std::max(1, settings.workers));
}

HttpResponse HttpEndpoints::page() {
    if (!page_.load())
        return text_response(503, "the chat page is not installed (make install puts it at " + page_.path() + ")");
    HttpResponse response;
    response.content_type = "text/html; charset=utf-8";
    response.headers = {
        {"content-security-policy", page_.content_security_policy()},
        {"cache-control", "no-cache"},
        {"referrer-policy", "no-referrer"},
        {"x-frame-options", "DENY"},
    };
    response.body = page_.html();
    return response;
}

// GET /client.js (PROTOCOL.md §5) and GET /vendor/markdown-it.mjs: modules
// revalidated by their entity tag, so that a reinstall reaches browsers at
// once. The client library is public (no credentials go with it): pages of
// any origin may import it.
HttpResponse HttpEndpoints::script(StaticFile &file, const std::string &if_none_match, bool any_origin) {
    if (!file.load()) return text_response(503, "not installed (make install puts it at " + file.path() + ")");
    HttpResponse response;
    response.content_type = "text/javascript; charset=utf-8";
    response.headers = {
        {"cache-control", "no-cache"},
        {"etag", file.etag()},
    };
    if (any_origin) response.headers.push_back({"access-control-allow-origin", "*"});
    if (!if_none_match.empty() && file.etag() == if_none_match)
        response.status = 304;
    else
        response.body = file.content();
    return response;
}

// POST /auth/anonymous (PROTOCOL.md §2): a token for a fresh user id. No
// row is written: a user exists only as the sub of its tokens.
HttpResponse HttpEndpoints::sign_in_anonymously(const std::string &peer) {
    if (!settings.anonymous_sign_in)
        return json_response(404, "{\"error\":\"not_found\",\"message\":\"anonymous sign-in is not enabled\"}\n");
    std::string secret = settings.jwt_secret ? settings.jwt_secret : "";
    if (secret.empty())
        return json_response(503, "{\"error\":\"unavailable\",\"message\":\"resumable_ws.jwt_secret is not set\"}\n");
    int retry_after_s = 0;
    if (!sign_in_limiter_.allow(peer, settings_per_minute(), std::chrono::steady_clock::now(), retry_after_s))
        return json_response(429,
                             "{\"error\":\"rate_limited\",\"retry_after\":" + std::to_string(retry_after_s) + "}\n",
                             {{"retry-after", std::to_string(retry_after_s)}});
    std::string user_id = random_uuid();
    int64_t ttl = settings.anonymous_token_ttl_s;
    // HS256 with jwt_secret even when a JWKS is configured: we hold no
    // private key (a JWKS is public), and Supabase users get tokens from Supabase.
    std::string token = sign_token(user_id, ttl, secret, settings.jwt_audience ? settings.jwt_audience : "",
                                   time(nullptr), /*anonymous=*/true, settings.jwt_issuer ? settings.jwt_issuer : "");
    nlohmann::json body = {
        {"access_token", token},
        {"token_type", "bearer"},
        {"expires_in", ttl},
        {"user", {{"id", user_id}, {"is_anonymous", true}}},
    };
    return json_response(200, body.dump() + "\n");
}

// GET /metrics (PROTOCOL.md §2), for clients in metrics_addresses only.
HttpResponse HttpEndpoints::metrics(const std::string &peer) {
    AddressFilter allowed;
    std::string error;
    // The setting's check hook refuses an invalid list; were one to get
    // here anyway, nobody matches.
    if (!allowed.parse(settings.metrics_addresses ? settings.metrics_addresses : "", error) || !allowed.matches(peer))
        return text_response(403, "metrics are not served to this address");
    HttpResponse response;
    response.content_type = kPrometheusContentType;
    response.headers = {{"cache-control", "no-store"}};
    response.body = render_metrics(snapshot(rws::metrics()));
    return response;
}

HttpResponse HttpEndpoints::health(bool database_ok, bool standby, size_t connections) {
    bool ok = database_ok && !standby;
    char body[200];
    snprintf(body, sizeof(body), "{\"status\":\"%s\",\"database\":%s,\"role\":\"%s\",\"connections\":%zu}\n",
             ok ? "ok" : "unavailable", database_ok ? "true" : "false",
             !database_ok ? "unknown"
             : standby    ? "standby"
                          : "primary",
             connections);
    // Answered a pass later, so requests pipelined behind it would wait in
    // lws's buffer, which 4.1.6 does not serve reliably after a deferred
    // answer: this connection closes after it (probes open a new one anyway).
    return json_response(ok ? 200 : 503, body, {{"connection", "close"}});
}

}  // namespace rws
