// Native TLS (HTTPS/WSS): the certificate and key of resumable_ws.ssl_cert_file
// and ssl_key_file, read and checked by us with OpenSSL, and put into the
// SSL_CTX that libwebsockets creates for each listening vhost. lws is given no
// file paths: its own loader (and lws_tls_cert_updated) replaces the
// certificate before it has read the key, so a broken key file would leave a
// context with no usable key. Here a new pair is installed only once both have
// been read and match, all at once. Pure C++: runs inside lws callbacks.
#pragma once

#include <memory>
#include <string>
#include <vector>

typedef struct ssl_ctx_st SSL_CTX;
typedef struct x509_st X509;
typedef struct evp_pkey_st EVP_PKEY;
struct stack_st_X509;

namespace rws {
namespace tls {

enum class Mode { Off, On, Incomplete };
// On when both files are set; one without the other is Incomplete.
Mode mode_of(const char *cert_file, const char *key_file);

// A certificate chain (leaf first) and its private key, read together.
class Credentials {
  public:
    Credentials();
    ~Credentials();
    Credentials(Credentials &&) noexcept;
    Credentials &operator=(Credentials &&) noexcept;

    // Reads a PEM certificate chain and an unencrypted PEM private key and
    // checks that they belong together. Returns "" or why they cannot be used
    // (never any key material); on failure *this is unchanged.
    std::string load(const std::string &cert_file, const std::string &key_file);
    bool loaded() const { return leaf_ != nullptr; }
    // EVP_PKEY_RSA, EVP_PKEY_EC, …; 0 when nothing is loaded.
    int key_type() const;
    // "CN=…, serial …, issued by CN=…, valid until …", for the log.
    std::string describe() const;
    bool expired() const;
    // SHA-256 over the chain's DER: whether a reload changed anything.
    std::string fingerprint() const;
    // Replaces ctx's certificate, chain and key in one call.
    bool install(SSL_CTX *ctx) const;

  private:
    struct Free {
        void operator()(X509 *x) const;
        void operator()(EVP_PKEY *k) const;
        void operator()(stack_st_X509 *s) const;
    };
    std::unique_ptr<X509, Free> leaf_;
    std::unique_ptr<stack_st_X509, Free> chain_;  // intermediates, may be empty
    std::unique_ptr<EVP_PKEY, Free> key_;
};

// The server policy on a context lws created: TLS 1.2 at least, forward-secret
// AEAD ciphers for TLS 1.2 (OpenSSL's TLS 1.3 suites are all fine), no
// renegotiation, no compression. False if OpenSSL refuses.
bool harden(SSL_CTX *ctx);

// What a SIGHUP did to TLS.
struct Reload {
    enum Outcome {
        Unchanged,  // nothing to say
        Reloaded,   // new handshakes get the new certificate
        Kept,       // the new settings or files are unusable: what was in force stays
        Restart,    // TLS switched on or off: the listening sockets must be made again
    } outcome = Unchanged;
    std::string message;  // for the log, when outcome is not Unchanged
};

// The TLS state of a server: what the settings asked for when it started, the
// credentials in force and the contexts they are installed in.
class State {
  public:
    // At start: reads the files the settings name. Returns "" (TLS on, or
    // off as asked) or why TLS was asked for and cannot be used.
    std::string prepare(const char *cert_file, const char *key_file);
    bool on() const { return on_; }
    // A new listening context: hardened, and given the credentials in force.
    bool configure(SSL_CTX *ctx);
    // After SIGHUP: rereads the files. Connections that are open keep the
    // certificate they were made with.
    Reload reload(const char *cert_file, const char *key_file);
    std::string describe() const { return credentials_.describe(); }

  private:
    bool on_ = false;
    Credentials credentials_;
    std::vector<SSL_CTX *> contexts_;
};

}  // namespace tls
}  // namespace rws
