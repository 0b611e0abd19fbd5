// The browser chat client (web/chat.html, installed into the extension's
// share directory): read from disk when it changes, served at GET /.
// Its Content-Security-Policy allows exactly the page's own inline script
// and style (by hash) and the modules the worker serves, so that text which
// somehow became markup still could not run. Pure C++: no Postgres calls, safe from lws callbacks.
#pragma once

#include "static_file.hpp"

#include <string>

namespace rws {

class ChatPage {
  public:
    // Where the page is installed; set once by the worker.
    void set_path(std::string path) { file_.set_path(std::move(path)); }
    const std::string &path() const { return file_.path(); }

    // Rereads the file if it changed. False if it cannot be read.
    bool load();
    const std::string &html() const { return file_.content(); }
    const std::string &content_security_policy() const { return csp_; }

    // The CSP for a page: 'self' and a hash source for each inline <script>
    // (none at all without scripts), a hash source for its first <style>.
    static std::string policy_for(const std::string &html);
    // The one Trusted Types policy the page may create (web/chat.html names it).
    static constexpr const char *kTrustedTypesPolicy = "rws-markdown";

  private:
    StaticFile file_;
    std::string csp_;
};

}  // namespace rws
