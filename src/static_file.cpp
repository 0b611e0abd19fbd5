#include "static_file.hpp"

#include <openssl/sha.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "cpp_only.hpp"  // must be last: no Postgres in this file

namespace rws {

static std::string etag_of(const std::string &content) {
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char *>(content.data()), content.size(), digest);
    char hex[2 * 16 + 1];
    for (int i = 0; i < 16; i++) snprintf(hex + 2 * i, 3, "%02x", digest[i]);  // 128 bits are plenty
    return "\"" + std::string(hex) + "\"";
}

bool StaticFile::load() {
    changed_ = false;
    struct stat info;
    if (path_.empty() || stat(path_.c_str(), &info) != 0) return false;
    if (size_ == info.st_size && mtime_.tv_sec == info.st_mtim.tv_sec && mtime_.tv_nsec == info.st_mtim.tv_nsec)
        return true;
    std::ifstream file(path_, std::ios::binary);
    if (!file) return false;
    std::ostringstream content;
    content << file.rdbuf();
    if (!file.good() && !file.eof()) return false;
    content_ = content.str();
    etag_ = etag_of(content_);
    size_ = info.st_size;
    mtime_ = info.st_mtim;
    changed_ = true;
    return true;
}

}  // namespace rws
