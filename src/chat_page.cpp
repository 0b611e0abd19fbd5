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

std::string ChatPage::policy_for(const std::string &html) {
    // connect-src 'self' covers ws:// and wss:// on the page's own host.
    return "default-src 'none'; script-src " + element_source(html, "script") + "; style-src " +
           element_source(html, "style") +
           "; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
           "frame-ancestors 'none'";
}

bool ChatPage::load() {
    if (!file_.load()) return false;
    if (file_.changed()) csp_ = policy_for(file_.content());
    return true;
}

}  // namespace rws
