// Unit tests of the TLS credentials and their reload (src/tls.cpp), with
// certificates made here by OpenSSL and written to a temporary directory.
#include "tls.hpp"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

namespace {

using rws::tls::Credentials;
using rws::tls::Mode;
using rws::tls::Reload;
using rws::tls::State;

std::string write(const std::string &path, const std::string &text) {
    FILE *file = fopen(path.c_str(), "wb");
    fwrite(text.data(), 1, text.size(), file);
    fclose(file);
    return path;
}

std::string pem_of(X509 *cert) {
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(bio, cert);
    char *data = nullptr;
    long length = BIO_get_mem_data(bio, &data);
    std::string text(data, static_cast<size_t>(length));
    BIO_free(bio);
    return text;
}

std::string pem_of(EVP_PKEY *key, const char *passphrase = nullptr) {
    BIO *bio = BIO_new(BIO_s_mem());
    if (passphrase)
        PEM_write_bio_PKCS8PrivateKey(bio, key, EVP_aes_128_cbc(), passphrase, static_cast<int>(strlen(passphrase)),
                                      nullptr, nullptr);
    else
        PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
    char *data = nullptr;
    long length = BIO_get_mem_data(bio, &data);
    std::string text(data, static_cast<size_t>(length));
    BIO_free(bio);
    return text;
}

// A self-signed P-256 certificate for CN=cn with this serial.
struct Pair {
    std::string cert, key;
    EVP_PKEY *pkey = nullptr;
    X509 *x509 = nullptr;
    Pair(const char *cn, long serial, int rsa_bits = 0) {
        pkey = rsa_bits ? EVP_RSA_gen(static_cast<unsigned int>(rsa_bits)) : EVP_EC_gen("P-256");
        x509 = X509_new();
        ASN1_INTEGER_set(X509_get_serialNumber(x509), serial);
        X509_gmtime_adj(X509_getm_notBefore(x509), -60);
        X509_gmtime_adj(X509_getm_notAfter(x509), 3600);
        X509_NAME *name = X509_get_subject_name(x509);
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char *>(cn), -1, -1, 0);
        X509_set_issuer_name(x509, name);
        X509_set_pubkey(x509, pkey);
        X509_sign(x509, pkey, EVP_sha256());
        cert = pem_of(x509);
        key = pem_of(pkey);
    }
    ~Pair() {
        X509_free(x509);
        EVP_PKEY_free(pkey);
    }
};

class Tls : public ::testing::Test {
  protected:
    void SetUp() override {
        char pattern[] = "/tmp/rws-tls-test-XXXXXX";
        dir_ = mkdtemp(pattern);
        umask(077);  // files written here are private unless a test says so
        ctx_ = SSL_CTX_new(TLS_server_method());
    }
    void TearDown() override {
        SSL_CTX_free(ctx_);
        std::string command = "rm -rf " + dir_;
        (void)system(command.c_str());
        // Nothing the code under test did may be left on OpenSSL's error
        // queue, where lws's next SSL_get_error would find it.
        EXPECT_EQ(ERR_peek_error(), 0u);
    }
    std::string path(const std::string &name) { return dir_ + "/" + name; }
    std::string serial_in_force() {
        X509 *cert = SSL_CTX_get0_certificate(ctx_);
        return cert ? std::to_string(ASN1_INTEGER_get(X509_get0_serialNumber(cert))) : "none";
    }

    std::string dir_;
    SSL_CTX *ctx_ = nullptr;
    Pair a_{"a.test", 10}, b_{"b.test", 11};
};

TEST(TlsMode, BothFilesOrNeither) {
    EXPECT_EQ(rws::tls::mode_of(nullptr, nullptr), Mode::Off);
    EXPECT_EQ(rws::tls::mode_of("", ""), Mode::Off);
    EXPECT_EQ(rws::tls::mode_of("c.pem", "k.pem"), Mode::On);
    EXPECT_EQ(rws::tls::mode_of("c.pem", ""), Mode::Incomplete);
    EXPECT_EQ(rws::tls::mode_of(nullptr, "k.pem"), Mode::Incomplete);
}

TEST_F(Tls, AMatchingPairLoadsAndIsDescribed) {
    Credentials credentials;
    EXPECT_EQ(credentials.load(write(path("c.pem"), a_.cert), write(path("k.pem"), a_.key)), "");
    EXPECT_TRUE(credentials.loaded());
    EXPECT_FALSE(credentials.expired());
    std::string text = credentials.describe();
    EXPECT_EQ(text.rfind("CN=a.test, serial 0A, issued by CN=a.test, valid until ", 0), 0u) << text;
    EXPECT_TRUE(credentials.install(ctx_));
    EXPECT_EQ(serial_in_force(), "10");
}

TEST_F(Tls, ChainAndACombinedFileLoad) {
    Credentials credentials;
    // Leaf, then an intermediate; and the key in the same file, after them.
    std::string combined = write(path("all.pem"), a_.cert + b_.cert + a_.key);
    EXPECT_EQ(credentials.load(combined, combined), "");
    EXPECT_TRUE(credentials.install(ctx_));
    STACK_OF(X509) *chain = nullptr;
    ASSERT_EQ(SSL_CTX_get0_chain_certs(ctx_, &chain), 1);
    ASSERT_NE(chain, nullptr);
    EXPECT_EQ(sk_X509_num(chain), 1);
}

TEST_F(Tls, UnusableFilesAreRefusedWithAReasonAndChangeNothing) {
    Credentials credentials;
    std::string cert = write(path("c.pem"), a_.cert), key = write(path("k.pem"), a_.key);
    ASSERT_EQ(credentials.load(cert, key), "");
    std::string before = credentials.fingerprint();
    Pair weak("weak.test", 12, 1024);  // below OpenSSL's security level 2

    struct Case {
        std::string cert, key, expected;
    } cases[] = {
        {path("missing.pem"), key, "No such file or directory"},
        {cert, path("missing.pem"), "No such file or directory"},
        {write(path("garbage.pem"), "hello\n"), key, "no PEM certificate"},
        {write(path("bad64.pem"), "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"), key,
         "no PEM certificate"},
        {write(path("truncated.pem"), a_.cert + b_.cert.substr(0, b_.cert.size() / 2)), key, "damaged certificate"},
        {cert, write(path("other.pem"), b_.key), "does not belong to the certificate"},
        {cert, write(path("encrypted.pem"), pem_of(a_.pkey, "secret")), "encrypted keys are not supported"},
        {cert, write(path("cert-as-key.pem"), a_.cert), "no usable PEM private key"},
        {path(""), key, "not a regular file"},  // a directory
        {cert, path(""), "not a regular file"},
        {write(path("weak.pem"), weak.cert), write(path("weak.key"), weak.key), "OpenSSL refuses the certificate"},
    };
    for (const auto &c : cases) {
        std::string error = credentials.load(c.cert, c.key);
        EXPECT_NE(error.find(c.expected), std::string::npos) << c.cert << " " << c.key << ": " << error;
        EXPECT_EQ(error.find("PRIVATE KEY"), std::string::npos) << error;
        EXPECT_EQ(credentials.fingerprint(), before);
    }
}

TEST_F(Tls, APrivateKeyOthersCanReadIsRefused) {
    Credentials credentials;
    std::string cert = write(path("c.pem"), a_.cert), key = write(path("k.pem"), a_.key);
    chmod(key.c_str(), 0644);
    EXPECT_NE(credentials.load(cert, key).find("has group or world access"), std::string::npos);
    EXPECT_FALSE(credentials.loaded());
    chmod(key.c_str(), 0600);
    EXPECT_EQ(credentials.load(cert, key), "");
    chmod(cert.c_str(), 0644);  // a certificate is public
    EXPECT_EQ(credentials.load(cert, key), "");
}

TEST_F(Tls, HardenedContextsStartAtTls12) {
    ASSERT_TRUE(rws::tls::harden(ctx_));
    EXPECT_EQ(SSL_CTX_get_min_proto_version(ctx_), TLS1_2_VERSION);
    EXPECT_NE(SSL_CTX_get_options(ctx_) & SSL_OP_NO_RENEGOTIATION, 0u);
    // No TLS 1.2 suite without forward secrecy or AEAD.
    STACK_OF(SSL_CIPHER) *ciphers = SSL_CTX_get_ciphers(ctx_);
    for (int i = 0; i < sk_SSL_CIPHER_num(ciphers); i++) {
        const SSL_CIPHER *cipher = sk_SSL_CIPHER_value(ciphers, i);
        if (strcmp(SSL_CIPHER_get_version(cipher), "TLSv1.3") == 0) continue;
        EXPECT_TRUE(SSL_CIPHER_is_aead(cipher)) << SSL_CIPHER_get_name(cipher);
        EXPECT_EQ(SSL_CIPHER_get_kx_nid(cipher), NID_kx_ecdhe) << SSL_CIPHER_get_name(cipher);
    }
}

TEST_F(Tls, ReloadInstallsANewPairAndKeepsTheOldOneWhenBroken) {
    State state;
    std::string cert = path("c.pem"), key = path("k.pem");
    write(cert, a_.cert);
    write(key, a_.key);
    ASSERT_EQ(state.prepare(cert.c_str(), key.c_str()), "");
    ASSERT_TRUE(state.on());
    ASSERT_TRUE(state.configure(ctx_));
    EXPECT_EQ(serial_in_force(), "10");

    EXPECT_EQ(state.reload(cert.c_str(), key.c_str()).outcome, Reload::Unchanged);

    write(cert, b_.cert);  // the key not yet: a renewal caught halfway
    Reload halfway = state.reload(cert.c_str(), key.c_str());
    EXPECT_EQ(halfway.outcome, Reload::Kept);
    EXPECT_EQ(halfway.message.rfind("the TLS certificate in force stays: ", 0), 0u) << halfway.message;
    EXPECT_EQ(serial_in_force(), "10");

    write(key, b_.key);
    Reload renewed = state.reload(cert.c_str(), key.c_str());
    EXPECT_EQ(renewed.outcome, Reload::Reloaded);
    EXPECT_EQ(renewed.message.rfind("TLS certificate reloaded: CN=b.test, serial 0B", 0), 0u) << renewed.message;
    EXPECT_EQ(serial_in_force(), "11");
    EXPECT_EQ(SSL_CTX_check_private_key(ctx_), 1);

    EXPECT_EQ(state.reload(cert.c_str(), "").outcome, Reload::Kept);
    EXPECT_EQ(serial_in_force(), "11");
    EXPECT_EQ(state.reload("", "").outcome, Reload::Restart);
}

TEST_F(Tls, SwitchingOnTakesARestartOnlyWithUsableFiles) {
    State state;
    ASSERT_EQ(state.prepare("", ""), "");
    EXPECT_FALSE(state.on());
    EXPECT_EQ(state.reload("", "").outcome, Reload::Unchanged);
    std::string cert = write(path("c.pem"), a_.cert), key = write(path("k.pem"), b_.key);
    Reload half = state.reload(cert.c_str(), "");
    EXPECT_EQ(half.outcome, Reload::Kept);
    EXPECT_EQ(half.message.rfind("TLS stays off: ", 0), 0u) << half.message;
    EXPECT_EQ(state.reload(cert.c_str(), key.c_str()).outcome, Reload::Kept);  // mismatched
    write(key, a_.key);
    EXPECT_EQ(state.reload(cert.c_str(), key.c_str()).outcome, Reload::Restart);
    EXPECT_NE(state.prepare(cert.c_str(), "").find("only ssl_cert_file is set"), std::string::npos);
}

TEST_F(Tls, AKeyOfAnotherTypeTakesARestart) {
    // OpenSSL would keep the EC pair beside a new RSA one (one per key type)
    // and go on showing it to clients that prefer ECDSA.
    State state;
    std::string cert = write(path("c.pem"), a_.cert), key = write(path("k.pem"), a_.key);
    ASSERT_EQ(state.prepare(cert.c_str(), key.c_str()), "");
    ASSERT_TRUE(state.configure(ctx_));
    Pair rsa("rsa.test", 12, 2048);
    write(cert, rsa.cert);
    write(key, rsa.key);
    Reload reloaded = state.reload(cert.c_str(), key.c_str());
    EXPECT_EQ(reloaded.outcome, Reload::Restart) << reloaded.message;
    EXPECT_NE(reloaded.message.find("a key of another type"), std::string::npos) << reloaded.message;
    EXPECT_EQ(serial_in_force(), "10");  // nothing installed meanwhile
}

TEST_F(Tls, OnlyRegularFilesAreRead) {
    std::string fifo = path("fifo.pem");
    ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
    std::string key = write(path("k.pem"), a_.key);
    State state;
    // A FIFO would block a plain open() until a writer came: refused at once.
    EXPECT_NE(state.prepare(fifo.c_str(), key.c_str()).find("is not a regular file"), std::string::npos);
}

}  // namespace
