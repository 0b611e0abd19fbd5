#include "tls.hpp"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "cpp_only.hpp"  // must be last: no Postgres in this file

namespace rws {
namespace tls {

// Mozilla's "intermediate" TLS 1.2 list without the DHE suites (no DH
// parameters to manage): every browser and client library of this decade
// negotiates one of them, or TLS 1.3.
static const char *const kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// PEM files are small; a setting pointing at something huge (or endless,
// such as /dev/zero) is refused rather than read.
constexpr size_t kMaxFileSize = 1024 * 1024;

Mode mode_of(const char *cert_file, const char *key_file) {
    bool cert = cert_file != nullptr && cert_file[0] != '\0';
    bool key = key_file != nullptr && key_file[0] != '\0';
    if (cert && key) return Mode::On;
    return cert || key ? Mode::Incomplete : Mode::Off;
}

void Credentials::Free::operator()(X509 *x) const {
    X509_free(x);
}
void Credentials::Free::operator()(EVP_PKEY *k) const {
    EVP_PKEY_free(k);
}
void Credentials::Free::operator()(stack_st_X509 *s) const {
    sk_X509_pop_free(s, X509_free);
}

Credentials::Credentials() = default;
Credentials::~Credentials() = default;
Credentials::Credentials(Credentials &&) noexcept = default;
Credentials &Credentials::operator=(Credentials &&) noexcept = default;

// The reason of OpenSSL's first queued error; the queue is left empty, so
// that no stale error misleads lws's next SSL_get_error.
static std::string openssl_reason() {
    unsigned long error = ERR_peek_error();
    const char *reason = error ? ERR_reason_error_string(error) : nullptr;
    ERR_clear_error();
    return reason ? reason : "unknown error";
}

// PostgreSQL's own rule for ssl_key_file: owned by the server's user and
// readable by nobody else, or owned by root and readable by a group at most.
static std::string key_permissions_error(const std::string &path, const struct stat &info) {
    if (!S_ISREG(info.st_mode)) return "\"" + path + "\" is not a regular file";
    if (info.st_uid == geteuid()) {
        if (info.st_mode & (S_IRWXG | S_IRWXO))
            return "\"" + path +
                   "\" has group or world access: a private key must be mode 0600 (or 0640 if owned by root)";
    } else if (info.st_uid == 0) {
        if (info.st_mode & (S_IWGRP | S_IXGRP | S_IRWXO))
            return "\"" + path + "\" is accessible by others: a private key owned by root must be mode 0640 or less";
    } else {
        return "\"" + path + "\" must be owned by the database server's user or by root";
    }
    return "";
}

// Reads a whole (small) regular file; "" in error on success. Opened without
// blocking (a FIFO named by mistake must not stall the worker), and a private
// key's permissions are checked on the file opened, not on its name.
static std::string read_file(const std::string &path, std::string &content, bool private_key = false) {
    int fd = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return "cannot open \"" + path + "\": " + strerror(errno);
    struct stat info;
    std::string error;
    if (fstat(fd, &info) != 0)
        error = "cannot open \"" + path + "\": " + strerror(errno);
    else if (!S_ISREG(info.st_mode))
        error = "\"" + path + "\" is not a regular file";
    else if (info.st_size > static_cast<off_t>(kMaxFileSize))
        error = "\"" + path + "\" is larger than 1 MB: not a PEM file";
    else if (private_key)
        error = key_permissions_error(path, info);
    FILE *file = error.empty() ? fdopen(fd, "rb") : nullptr;
    if (file == nullptr) {
        if (error.empty()) error = "cannot open \"" + path + "\": " + strerror(errno);
        close(fd);
        return error;
    }
    content.clear();
    // Room for the whole file up front: a key is never copied by a growing
    // buffer into memory freed without being wiped.
    content.reserve(static_cast<size_t>(info.st_size) + 1);
    char buffer[16384];
    size_t n;
    while ((n = fread(buffer, 1, sizeof(buffer), file)) > 0 && content.size() <= kMaxFileSize)
        content.append(buffer, n);
    OPENSSL_cleanse(buffer, sizeof(buffer));
    bool failed = ferror(file) != 0;
    int saved_errno = errno;
    fclose(file);
    if (failed) return "cannot read \"" + path + "\": " + strerror(saved_errno);
    if (content.size() > kMaxFileSize) return "\"" + path + "\" is larger than 1 MB: not a PEM file";
    return "";
}

// Refuses to prompt for a passphrase (OpenSSL's default would ask on the
// terminal): an encrypted key fails to load instead.
static int no_passphrase(char *, int, int, void *) {
    return -1;
}

int Credentials::key_type() const {
    return key_ ? EVP_PKEY_get_base_id(key_.get()) : 0;
}

std::string Credentials::load(const std::string &cert_file, const std::string &key_file) {
    ERR_clear_error();
    std::string text;
    std::string error = read_file(cert_file, text);
    if (!error.empty()) return error;
    std::unique_ptr<BIO, int (*)(BIO *)> bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())), BIO_free);
    if (!bio) return "out of memory";
    std::unique_ptr<X509, Free> leaf(PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr));
    if (!leaf) return "no PEM certificate in \"" + cert_file + "\": " + openssl_reason();
    std::unique_ptr<stack_st_X509, Free> chain(sk_X509_new_null());
    if (!chain) return "out of memory";
    for (;;) {
        X509 *next = PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr);
        if (next == nullptr) {
            // The end of the file reads as "no start line"; anything else is
            // a damaged certificate further down the chain.
            unsigned long last = ERR_peek_last_error();
            if (ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE) break;
            return "a damaged certificate in the chain of \"" + cert_file + "\": " + openssl_reason();
        }
        if (!sk_X509_push(chain.get(), next)) {
            X509_free(next);
            return "out of memory";
        }
    }
    ERR_clear_error();

    error = read_file(key_file, text, /*private_key=*/true);
    if (!error.empty()) return error;
    bio.reset(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
    if (!bio) return "out of memory";
    std::unique_ptr<EVP_PKEY, Free> key(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr));
    OPENSSL_cleanse(&text[0], text.size());
    if (!key)
        return "no usable PEM private key in \"" + key_file +
               "\" (encrypted keys are not supported): " + openssl_reason();
    if (X509_check_private_key(leaf.get(), key.get()) != 1) {
        ERR_clear_error();
        return "the private key in \"" + key_file + "\" does not belong to the certificate in \"" + cert_file + "\"";
    }
    // OpenSSL's security level (Debian's is 2) refuses, say, a 1024-bit RSA
    // key or a SHA-1 signature only when the pair is put into a context: try
    // one here, so that such a file is refused like any other broken one.
    std::unique_ptr<SSL_CTX, void (*)(SSL_CTX *)> trial(SSL_CTX_new(TLS_server_method()), SSL_CTX_free);
    if (!trial) return "out of memory: " + openssl_reason();
    if (SSL_CTX_use_cert_and_key(trial.get(), leaf.get(), key.get(), chain.get(), 1) != 1)
        return "OpenSSL refuses the certificate in \"" + cert_file + "\": " + openssl_reason();
    leaf_ = std::move(leaf);
    chain_ = std::move(chain);
    key_ = std::move(key);
    return "";
}

static std::string common_name(X509_NAME *name) {
    char buffer[256] = {0};
    if (name == nullptr || X509_NAME_get_text_by_NID(name, NID_commonName, buffer, sizeof(buffer)) < 0) {
        ERR_clear_error();
        return "(none)";
    }
    return buffer;
}

std::string Credentials::describe() const {
    if (!leaf_) return "no certificate";
    std::string text = "CN=" + common_name(X509_get_subject_name(leaf_.get()));
    if (BIGNUM *serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(leaf_.get()), nullptr)) {
        if (char *hex = BN_bn2hex(serial)) {
            text += std::string(", serial ") + hex;
            OPENSSL_free(hex);
        }
        BN_free(serial);
    }
    text += ", issued by CN=" + common_name(X509_get_issuer_name(leaf_.get()));
    if (BIO *out = BIO_new(BIO_s_mem())) {
        if (ASN1_TIME_print(out, X509_get0_notAfter(leaf_.get())) == 1) {
            char *data = nullptr;
            long length = BIO_get_mem_data(out, &data);
            text += ", valid until " + std::string(data, static_cast<size_t>(length));
        }
        BIO_free(out);
    }
    if (expired()) text += " (EXPIRED: clients will refuse it)";
    ERR_clear_error();
    return text;
}

bool Credentials::expired() const {
    return leaf_ && X509_cmp_current_time(X509_get0_notAfter(leaf_.get())) < 0;
}

std::string Credentials::fingerprint() const {
    std::string all;
    auto add = [&all](X509 *cert) {
        unsigned char digest[EVP_MAX_MD_SIZE];
        unsigned int length = 0;
        if (X509_digest(cert, EVP_sha256(), digest, &length) == 1)
            all.append(reinterpret_cast<const char *>(digest), length);
    };
    if (leaf_) add(leaf_.get());
    if (chain_)
        for (int i = 0; i < sk_X509_num(chain_.get()); i++) add(sk_X509_value(chain_.get(), i));
    ERR_clear_error();
    return all;
}

bool Credentials::install(SSL_CTX *ctx) const {
    if (!leaf_ || ctx == nullptr) return false;
    // Checks the key against the certificate again and replaces both (and
    // the chain) together: the context never holds one without the other.
    bool ok = SSL_CTX_use_cert_and_key(ctx, leaf_.get(), key_.get(), chain_.get(), 1) == 1;
    ERR_clear_error();
    return ok;
}

bool harden(SSL_CTX *ctx) {
    bool ok =
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1 && SSL_CTX_set_cipher_list(ctx, kTls12Ciphers) == 1;
    // Client-initiated renegotiation costs the server a handshake per
    // request of the client: refused (TLS 1.3 has none).
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    ERR_clear_error();
    return ok;
}

std::string State::prepare(const char *cert_file, const char *key_file) {
    switch (mode_of(cert_file, key_file)) {
        case Mode::Off: on_ = false; return "";
        case Mode::Incomplete:
            return std::string("TLS needs both resumable_ws.ssl_cert_file and resumable_ws.ssl_key_file; only ") +
                   (cert_file && cert_file[0] ? "ssl_cert_file" : "ssl_key_file") + " is set";
        case Mode::On: break;
    }
    Credentials loaded;
    std::string error = loaded.load(cert_file, key_file);
    if (!error.empty()) return error;
    credentials_ = std::move(loaded);
    on_ = true;
    return "";
}

bool State::configure(SSL_CTX *ctx) {
    if (ctx == nullptr || !harden(ctx) || !credentials_.install(ctx)) return false;
    contexts_.push_back(ctx);
    return true;
}

Reload State::reload(const char *cert_file, const char *key_file) {
    Reload result;
    Mode mode = mode_of(cert_file, key_file);
    if (mode == Mode::Off) {
        if (on_) {
            result.outcome = Reload::Restart;
            result.message = "TLS switched off: the worker restarts to serve plain HTTP and WebSocket";
        }
        return result;
    }
    const char *in_force = on_ ? "the TLS certificate in force stays" : "TLS stays off";
    result.outcome = Reload::Kept;
    if (mode == Mode::Incomplete) {
        result.message =
            std::string(in_force) + ": resumable_ws.ssl_cert_file and resumable_ws.ssl_key_file must both be set";
        return result;
    }
    Credentials fresh;
    std::string error = fresh.load(cert_file, key_file);
    if (!error.empty()) {
        result.message = std::string(in_force) + ": " + error;
        return result;
    }
    if (!on_) {
        result.outcome = Reload::Restart;
        result.message =
            "TLS switched on (certificate " + fresh.describe() + "): the worker restarts to serve HTTPS and WSS only";
        return result;
    }
    if (fresh.fingerprint() == credentials_.fingerprint()) {
        result.outcome = Reload::Unchanged;
        return result;
    }
    // OpenSSL keeps one certificate per key type in a context: an RSA pair
    // put where an EC one was would sit beside it, and clients preferring
    // ECDSA would go on getting the old one. A new context is needed.
    if (fresh.key_type() != credentials_.key_type()) {
        result.outcome = Reload::Restart;
        result.message = "the new certificate (" + fresh.describe() +
                         ") has a key of another type: the worker restarts to serve it alone";
        return result;
    }
    // Installed only once loaded and checked. Should OpenSSL still refuse it
    // (not expected: it makes the same checks), every context gets the old
    // pair back, so that all listening addresses show the same certificate.
    for (SSL_CTX *ctx : contexts_)
        if (!fresh.install(ctx)) {
            for (SSL_CTX *again : contexts_) credentials_.install(again);
            result.message = std::string(in_force) + ": OpenSSL refused the new certificate";
            return result;
        }
    credentials_ = std::move(fresh);
    result.outcome = Reload::Reloaded;
    result.message = "TLS certificate reloaded: " + credentials_.describe();
    return result;
}

}  // namespace tls
}  // namespace rws
