// Threads of the worker process (libcurl's) must never run a Postgres signal
// handler: they are created with every signal blocked, and inherit that mask.
#pragma once

#include <pthread.h>
#include <signal.h>

#include <thread>
#include <utility>

namespace rws {

template <typename Function>
std::thread start_signal_free_thread(Function &&function) {
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    try {
        std::thread thread(std::forward<Function>(function));
        pthread_sigmask(SIG_SETMASK, &previous, nullptr);
        return thread;
    } catch (...) {
        pthread_sigmask(SIG_SETMASK, &previous, nullptr);
        throw;
    }
}

}  // namespace rws
