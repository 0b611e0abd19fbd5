#include "chat_page.hpp"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "cpp_only.hpp"  // must be last: no Postgres in this file

namespace rws {

static std::string sha256_source(const std::string &text) {
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char *>(text.data()), text.size(), digest);
    unsigned char encoded[4 * ((SHA256_DIGEST_LENGTH + 2) / 3) + 1];
    EVP_EncodeBlock(encoded, digest, SHA256_DIGEST_LENGTH);
    return "'sha256-" + std::string(reinterpret_cast<char *>(encoded)) + "'";
}

// The hash source of the first <tag>…</tag> element's text, or 'none'.
static std::string element_source(const std::string &html, const std::string &tag) {
    std::string open = "<" + tag + ">", close = "</" + tag + ">";
    auto start = html.find(open);
    if (start == std::string::npos) return "'none'";
    start += open.size();
    auto end = html.find(close, start);
    if (end == std::string::npos) return "'none'";
    return sha256_source(html.substr(start, end - start));
}

// 'self' (the modules the worker serves: /client.js, /vendor/…) and a hash
// source for each inline <script>; 'none' for a page without scripts.
static std::string script_sources(const std::string &html) {
    std::string sources;
    for (size_t at = html.find("<script"); at != std::string::npos; at = html.find("<script", at)) {
        auto open_end = html.find('>', at);
        if (open_end == std::string::npos) break;
        auto close = html.find("</script>", open_end);
        if (close == std::string::npos) break;
        std::string open_tag = html.substr(at, open_end - at);
        if (open_tag.find(" src=") == std::string::npos)
            sources += " " + sha256_source(html.substr(open_end + 1, close - open_end - 1));
        at = close;
    }
    return sources.empty() ? "'none'" : "'self'" + sources;
}

std::string ChatPage::policy_for(const std::string &html) {
    // connect-src 'self' covers ws:// and wss:// on the page's own host. Only
    // the page's Trusted Types policy (kTrustedTypesPolicy: Markdown rendered
    // with raw HTML off) may write markup into the DOM.
    return "default-src 'none'; script-src " + script_sources(html) + "; style-src " + element_source(html, "style") +
           "; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
           "frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types " +
           kTrustedTypesPolicy;
}

bool ChatPage::load() {
    if (!file_.load()) return false;
    if (file_.changed()) csp_ = policy_for(file_.content());
    return true;
}

}  // namespace rws
