// The HTTP endpoints of PROTOCOL.md §2 — the chat page, the client library
// and the page's Markdown renderer, anonymous sign-in, /metrics and the
// /healthz body — as responses. The transport (server.cpp) routes requests
// here and writes the answers; nothing here knows about sockets or lws.
#pragma once

#include "chat_page.hpp"
#include "sign_in_limiter.hpp"
#include "static_file.hpp"

#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace rws {

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;  // lowercase names

// One HTTP answer, written in pieces as the socket takes them.
struct HttpResponse {
    int status = 200;
    std::string content_type;
    HttpHeaders headers;
    std::string body;
    size_t body_sent = 0;
    bool headers_sent = false;
    bool close_after = false;  // the connection closes once it is out (no keep-alive)
    bool head_only = false;    // answering HEAD: the headers of the GET answer, no body
};

HttpResponse text_response(int status, const std::string &text, HttpHeaders headers = {});
HttpResponse json_response(int status, const std::string &json, HttpHeaders headers = {});

class HttpEndpoints {
  public:
    // Where GET / finds the chat page (web/chat.html as installed).
    void set_page_path(std::string path) { page_.set_path(std::move(path)); }
    // Where GET /client.js finds the client library (clients/js/client.js as installed).
    void set_client_library_path(std::string path) { client_library_.set_path(std::move(path)); }
    // Where GET /vendor/markdown-it.mjs finds the page's Markdown renderer
    // (markdown-it's browser module, installed from npm with the page).
    void set_markdown_renderer_path(std::string path) { markdown_renderer_.set_path(std::move(path)); }

    // GET /
    HttpResponse page();
    // GET /client.js; if_none_match: that request header ("" if absent).
    HttpResponse client_library(const std::string &if_none_match) {
        return script(client_library_, if_none_match, /*any_origin=*/true);
    }
    // GET /vendor/markdown-it.mjs
    HttpResponse markdown_renderer(const std::string &if_none_match) {
        return script(markdown_renderer_, if_none_match, /*any_origin=*/false);
    }
    // POST /auth/anonymous from this peer address.
    HttpResponse sign_in_anonymously(const std::string &peer);
    // GET /metrics from this peer address.
    static HttpResponse metrics(const std::string &peer);
    // GET /healthz: 200 on a reachable primary, 503 on a hot standby or
    // when the database cannot be reached.
    static HttpResponse health(bool database_ok, bool standby, size_t connections);

    // Once a second: forgets sign-in counts older than a minute.
    void tick(std::chrono::steady_clock::time_point now) {
        if (sign_in_limiter_.tracked() > 0) sign_in_limiter_.prune(settings_per_minute(), now);
    }

  private:
    static int settings_per_minute();
    static HttpResponse script(StaticFile &file, const std::string &if_none_match, bool any_origin);

    ChatPage page_;
    StaticFile client_library_;
    StaticFile markdown_renderer_;
    SignInLimiter sign_in_limiter_;
};

}  // namespace rws
