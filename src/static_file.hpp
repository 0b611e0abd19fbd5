// A file installed into the extension's share directory and served over
// HTTP (the chat page, the client library): read again when it changes on
// disk, so that reinstalling it needs no restart. Pure C++: no Postgres
// calls, safe from lws callbacks.
#pragma once

#include <sys/types.h>

#include <ctime>
#include <string>

namespace rws {

class StaticFile {
  public:
    // Where the file is installed; set once by the worker.
    void set_path(std::string path) { path_ = std::move(path); }
    const std::string &path() const { return path_; }

    // Rereads the file if it changed. False if it cannot be read. True
    // when it was (re)read in this call: changed() says so.
    bool load();
    bool changed() const { return changed_; }
    const std::string &content() const { return content_; }
    // A strong entity tag of the content ("…", for ETag and If-None-Match).
    const std::string &etag() const { return etag_; }

  private:
    std::string path_;
    std::string content_;
    std::string etag_;
    bool changed_ = false;
    struct timespec mtime_ = {0, 0};
    off_t size_ = -1;
};

}  // namespace rws
