// Runs work in a worker transaction with SPI connected. An ERROR inside is
// logged, the transaction aborted, and transact() returns false: the worker
// goes on serving.
#pragma once

#include "event_log.hpp"

#include <functional>

namespace rws {

class Database {
  public:
    bool transact(const std::function<void(EventLog &)> &work);

  private:
    EventLog log_;
};

}  // namespace rws
