#include "generations.hpp"

#include "session_owner.hpp"
#include "settings.hpp"
#include "worker_peers.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>

#include "cpp_only.hpp"  // must be last: no Postgres in this file

namespace rws {

using Json = nlohmann::ordered_json;

static std::string dump(const Json &json) {
    return json.dump(-1, ' ', false, Json::error_handler_t::replace);
}

static const char kInterruptedMessage[] = "the server restarted during this answer";

// A generation's text is written as one assistant_delta at most this often
// (the first at once): each delta is a row, a frame per connection and its
// share of a commit, and tokens come every 10-30 ms. 50 ms stays below what
// a reader notices, and an answer's end is written at once.
constexpr std::chrono::milliseconds kDeltaInterval{50};

// Room in an assistant_done event for what is not its content: the message
// id, the finish reason, the keys and the event type.
constexpr size_t kDoneEventReserve = 256;

// Bytes a character of a JSON string takes once escaped (as Postgres's jsonb
// output and nlohmann's dump write it: raw UTF-8, short escapes, \u00XX).
static size_t json_escaped_size(unsigned char c) {
    switch (c) {
        case '"':
        case '\\':
        case '\b':
        case '\f':
        case '\n':
        case '\r':
        case '\t': return 2;
        default: return c < 0x20 ? 6 : 1;
    }
}

// How many leading bytes of text fit in room bytes of JSON string, cut at a
// UTF-8 character boundary; adds their escaped size to used.
static size_t prefix_that_fits(const std::string &text, size_t room, size_t &used) {
    size_t taken = 0, size = 0;
    while (taken < text.size()) {
        unsigned char lead = static_cast<unsigned char>(text[taken]);
        size_t length = lead < 0x80 ? 1 : lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
        length = std::min(length, text.size() - taken);
        size_t cost = length == 1 ? json_escaped_size(lead) : length;
        if (size + cost > room) break;
        size += cost;
        taken += length;
    }
    used += size;
    return taken;
}

// What one pass writes, and what it changes in memory once that commits.
struct Generations::Plan {
    size_t events = 0;  // appended
    std::vector<GenerationStatus> statuses;
    std::vector<std::function<void()>> after_commit;
    std::unordered_set<std::string> settled_sessions;  // locked or gone: status known
    std::vector<GenerationOutcome> outcomes;           // of the generations this pass ends
    bool busy = false;                                 // some session was locked by another transaction
    std::vector<std::string> claimed;                  // to_claim_ entries read
    std::vector<std::string> rechecked;                // to_recheck_ entries read
    std::vector<std::string> found_again;              // rechecked, and open generations found
};

Generations::Generations(Database &db, LlmClient &llm) : db_(db), llm_(llm), plan_(std::make_unique<Plan>()) {}
Generations::~Generations() = default;

void Generations::message_committed(const std::string &session_id) {
    to_claim_.insert(session_id);
}

void Generations::session_woken(const std::string &session_id) {
    if (owned_.count(session_id)) to_claim_.insert(session_id);
}

void Generations::all_sessions_woken() {
    to_claim_.insert(owned_.begin(), owned_.end());
}

void Generations::adopt(const OpenGeneration &row) {
    std::vector<uint64_t> &ids = by_session_[row.session_id];
    auto later = ids.begin();
    for (; later != ids.end(); ++later) {
        const Generation &known = generations_.at(*later);
        if (known.reply_to == row.reply_to) return;  // in memory already
        if (known.reply_to > row.reply_to) break;
    }
    uint64_t id = next_id_++;
    Generation &g = generations_[id];
    g.id = id;
    g.session_id = row.session_id;
    g.reply_to = row.reply_to;
    g.message_id = row.message_id;
    ids.insert(later, id);  // in message order
    may_start_ = true;
    work_pending_ = true;
    if (row.running) {
        // Running, yet not here, under a lock this worker now holds: the
        // worker that ran it is gone.
        g.started = true;
        running_++;
        g.has_end = true;
        g.end = End{true, "interrupted", kInterruptedMessage};
    }
}

void Generations::sync_ownership(EventLog &log) {
    Plan &plan = *plan_;
    // Released first, then read once more: a message another worker
    // committed meanwhile found the lock taken and left its generation here.
    for (const std::string &session_id : to_release_) {
        if (by_session_.count(session_id) || !owned_.count(session_id)) continue;
        disown_session(session_id);
        owned_.erase(session_id);
        to_recheck_.insert(session_id);
    }
    to_release_.clear();

    std::vector<std::string> read;
    for (const std::string &session_id : to_claim_) {
        plan.claimed.push_back(session_id);
        if (owned_.count(session_id) || try_own_session(session_id)) {
            owned_.insert(session_id);
            read.push_back(session_id);
        }
        // Else its owner runs it: the commit of the message woke it.
    }
    for (const std::string &session_id : to_recheck_) {
        plan.rechecked.push_back(session_id);
        if (!owned_.count(session_id)) read.push_back(session_id);
    }
    std::unordered_set<std::string> found_again;
    for (const OpenGeneration &row : log.open_generations(read)) {
        if (owned_.count(row.session_id))
            adopt(row);
        else
            found_again.insert(row.session_id);
    }
    plan.found_again.assign(found_again.begin(), found_again.end());
    for (const std::string &session_id : read)
        if (owned_.count(session_id) && !by_session_.count(session_id)) to_release_.insert(session_id);

    // Cancels that came before the session's generations were read.
    for (const std::string &session_id : cancel_when_claimed_) {
        if (by_session_.count(session_id))
            cancel(session_id);
        else if (!owned_.count(session_id))
            forwarded_cancels_[session_id] = peers::other_workers();
    }
    cancel_when_claimed_.clear();
}

void Generations::remove(uint64_t id) {
    auto it = generations_.find(id);
    if (it == generations_.end()) return;
    if (it->second.started) running_--;
    std::string session_id = it->second.session_id;
    auto list = by_session_.find(session_id);
    if (list != by_session_.end()) {
        auto &ids = list->second;
        ids.erase(std::remove(ids.begin(), ids.end(), id), ids.end());
        if (ids.empty()) by_session_.erase(list);
    }
    generations_.erase(it);
    may_start_ = true;  // a slot, or the session's next message, is free
    if (owned_.count(session_id) && !by_session_.count(session_id)) to_release_.insert(session_id);
}

bool Generations::recover() {
    std::vector<std::string> sessions;
    if (!db_.transact([&](EventLog &log) { sessions = log.sessions_with_open_generations(); })) return false;
    to_claim_.insert(sessions.begin(), sessions.end());
    if (!sessions.empty())
        fprintf(stderr, "resumable_ws: %zu sessions with generations to look at after a (re)start\n", sessions.size());
    return true;
}

void Generations::cancel(const std::string &session_id) {
    auto it = by_session_.find(session_id);
    if (it != by_session_.end()) {
        generations_[it->second.front()].cancel_requested = true;
        work_pending_ = true;
    } else if (to_claim_.count(session_id)) {
        cancel_when_claimed_.insert(session_id);
    } else {
        forwarded_cancels_[session_id] = peers::other_workers();
    }
}

void Generations::cancel_forwarded(const std::string &session_id) {
    if (by_session_.count(session_id)) cancel(session_id);
}

void Generations::session_may_be_closed(const std::string &session_id) {
    if (by_session_.count(session_id) == 0) return;
    check_status_.insert(session_id);
    work_pending_ = true;
}

void Generations::all_sessions_may_be_closed() {
    for (const auto &entry : by_session_) check_status_.insert(entry.first);
    work_pending_ = !by_session_.empty();
}

void Generations::interrupt_all() {
    shutting_down_ = true;
    llm_.stop();
    for (auto &entry : generations_) {
        Generation &g = entry.second;
        if (!g.started || g.has_end) continue;
        g.has_end = true;
        g.end = End{true, "interrupted", kInterruptedMessage};
        work_pending_ = true;
    }
}

void Generations::apply_updates() {
    updates_.clear();
    llm_.drain(updates_);
    for (LlmUpdate &update : updates_) {
        auto it = generations_.find(update.id);
        if (it == generations_.end()) continue;
        Generation &g = it->second;
        if (!g.started || g.has_end) continue;                            // the first end wins (cancel vs done)
        if (update.kind != LlmUpdate::Kind::Delta) work_pending_ = true;  // deltas wait for their turn (delta_due)
        switch (update.kind) {
            case LlmUpdate::Kind::Delta:
                if (!g.got_first_text) {
                    g.got_first_text = true;
                    metrics().time_to_first_token.observe(kFirstTokenBuckets, Clock::now() - g.submitted_at);
                }
                g.pending += update.text;
                break;
            case LlmUpdate::Kind::Done:
                g.has_end = true;
                g.end = End{false, update.text, {}};
                break;
            case LlmUpdate::Kind::Error:
                g.has_end = true;
                g.end = End{true, update.text, update.message};
                break;
        }
    }
}

bool Generations::delta_due(const Generation &g, Clock::time_point now) {
    return g.started && !g.pending.empty() && now - g.delta_written_at >= kDeltaInterval;
}

int Generations::idle_timeout_ms() const {
    if (failing_) return 250;
    if (retry_soon_) return 20;
    if (work_pending_ || !to_claim_.empty() || !to_release_.empty() || !to_recheck_.empty()) return 0;
    if (!forwarded_cancels_.empty()) return 20;  // a ring was full
    // The soonest delta that waits for its turn.
    Clock::time_point now = Clock::now();
    long soonest = -1;
    for (const auto &entry : generations_) {
        const Generation &g = entry.second;
        if (!g.started || g.pending.empty()) continue;
        auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(g.delta_written_at + kDeltaInterval - now);
        long ms = std::max<long>(0, static_cast<long>(wait.count()) + (wait.count() > 0 ? 1 : 0));
        if (soonest < 0 || ms < soonest) soonest = ms;
    }
    if (soonest == 0) return 0;
    if (may_start_ && has_startable_head()) return 0;
    return static_cast<int>(soonest);
}

bool Generations::has_startable_head() const {
    if (shutting_down_ || running_ >= static_cast<size_t>(settings.llm_max_concurrency)) return false;
    for (const auto &entry : by_session_) {
        const Generation &head = generations_.at(entry.second.front());
        if (!head.started) return true;
    }
    return false;
}

void Generations::choose_starts() {
    to_start_.clear();
    if (!may_start_ || shutting_down_) return;
    may_start_ = false;
    std::vector<uint64_t> heads;
    for (const auto &entry : by_session_) {
        const Generation &head = generations_.at(entry.second.front());
        if (!head.started && !head.cancel_requested) heads.push_back(head.id);
    }
    if (heads.empty()) return;
    std::sort(heads.begin(), heads.end());
    size_t limit = static_cast<size_t>(settings.llm_max_concurrency);
    size_t granted = peers::reserve_generations(running_, heads.size(), limit);
    for (uint64_t id : heads) {
        if (to_start_.size() >= granted) break;
        to_start_.insert(id);
    }
}

bool Generations::prepare() {
    apply_updates();
    to_start_.clear();
    pass_time_ = Clock::now();

    for (auto it = forwarded_cancels_.begin(); it != forwarded_cancels_.end();) {
        peers::forward_cancel(it->first, it->second);
        it = it->second == 0 ? forwarded_cancels_.erase(it) : std::next(it);
    }
    if (peers::generation_slot_freed()) may_start_ = true;
    if (!to_claim_.empty() || !to_release_.empty() || !to_recheck_.empty()) return true;
    if (may_start_ && has_startable_head()) return true;
    if (work_pending_ || failing_ || retry_soon_) return true;
    for (const auto &entry : generations_)
        if (delta_due(entry.second, pass_time_)) return true;
    return false;
}

void Generations::committed(bool ok) {
    Plan plan;
    std::swap(plan, *plan_);
    failing_ = !ok;
    if (!ok) {
        may_start_ = may_start_ || !to_start_.empty();  // choose again next time
        peers::set_generation_usage(running_);          // what was reserved for them
        return;
    }
    for (const std::string &session_id : plan.claimed) to_claim_.erase(session_id);
    for (const std::string &session_id : plan.rechecked) to_recheck_.erase(session_id);
    for (const std::string &session_id : plan.found_again) to_claim_.insert(session_id);
    retry_soon_ = plan.busy;
    work_pending_ = false;
    if (plan.busy) may_start_ = true;  // a start may have waited on a lock
    for (const auto &session_id : plan.settled_sessions) check_status_.erase(session_id);
    for (auto &step : plan.after_commit) step();
    for (GenerationOutcome outcome : plan.outcomes) count(metrics().generations[outcome]);
    if (plan.events > 0) count(metrics().events_appended[kSourceGeneration], plan.events);
    peers::set_generation_usage(running_);
}

void Generations::write(EventLog &log, AppendBatch &appends) {
    *plan_ = Plan();
    Plan &plan = *plan_;
    sync_ownership(log);
    choose_starts();
    if (!to_start_.empty()) work_pending_ = true;
    const std::set<uint64_t> &to_start = to_start_;
    // Sessions with something to write, locked without waiting.
    std::unordered_set<std::string> wanted(check_status_.begin(), check_status_.end());
    for (const auto &entry : generations_) {
        const Generation &g = entry.second;
        if (to_start.count(g.id) || g.cancel_requested || g.has_end || delta_due(g, pass_time_))
            wanted.insert(g.session_id);
    }
    if (wanted.empty()) return;
    std::vector<std::string> ids(wanted.begin(), wanted.end());
    appends.lock(log, ids);
    for (const auto &id : ids)
        if (appends.session(id).lock != AppendBatch::Lock::Busy) plan.settled_sessions.insert(id);

    // The conversations of the generations that start, in one statement.
    std::unordered_map<uint64_t, size_t> context_of;  // by generation
    std::vector<ContextLookup> lookups;
    if (settings.llm_provider != LLM_PROVIDER_NONE)
        for (uint64_t gid : to_start) {
            const Generation &g = generations_.at(gid);
            const AppendBatch::SessionState &session = appends.session(g.session_id);
            if (session.lock != AppendBatch::Lock::Locked || !session.active) continue;
            context_of[gid] = lookups.size();
            lookups.push_back(ContextLookup{g.session_id, g.reply_to});
        }
    std::vector<std::vector<ContextMessage>> contexts =
        log.load_contexts(lookups, settings.llm_context_messages + 1);  // + the message being answered

    for (auto &entry : generations_) {
        Generation &g = entry.second;
        uint64_t gid = g.id;
        if (!wanted.count(g.session_id)) continue;
        const AppendBatch::SessionState &session = appends.session(g.session_id);
        if (session.lock != AppendBatch::Lock::Locked) {
            if (session.lock == AppendBatch::Lock::Busy) {
                plan.busy = true;  // a long transaction holds it: next pass
                continue;
            }
            // Deleted (cleanup): nothing to write to.
            plan.after_commit.push_back([this, gid]() {
                llm_.abort(gid);
                remove(gid);
            });
            continue;
        }
        bool active = session.active;
        auto append = [&](const char *event_type, const Json &payload) {
            appends.append(g.session_id, event_type, dump(payload));
            plan.events++;
        };
        auto set_status = [&](const char *status) {
            plan.statuses.push_back(GenerationStatus{g.session_id, g.reply_to, status});
        };

        if (!g.started) {
            bool is_head = by_session_[g.session_id].front() == gid;
            if (!active) {
                set_status("skipped");  // never started: no events
                plan.outcomes.push_back(kOutcomeSkipped);
                plan.after_commit.push_back([this, gid]() { remove(gid); });
            } else if (g.cancel_requested && is_head) {
                append("assistant_started", Json{{"message_id", g.message_id}, {"reply_to", g.reply_to}});
                append("assistant_done",
                       Json{{"message_id", g.message_id}, {"content", ""}, {"finish_reason", "cancelled"}});
                set_status("done");
                plan.outcomes.push_back(kOutcomeCancelled);
                plan.after_commit.push_back([this, gid]() { remove(gid); });
            } else if (to_start.count(gid) && is_head) {
                if (settings.llm_provider == LLM_PROVIDER_NONE) {
                    set_status("skipped");
                    plan.outcomes.push_back(kOutcomeSkipped);
                    plan.after_commit.push_back([this, gid]() { remove(gid); });
                    continue;
                }
                auto request = std::make_shared<LlmRequest>(build_request(g, contexts.at(context_of.at(gid))));
                append("assistant_started", Json{{"message_id", g.message_id}, {"reply_to", g.reply_to}});
                set_status("running");
                plan.after_commit.push_back([this, gid, request]() {
                    auto it = generations_.find(gid);
                    if (it == generations_.end()) return;
                    it->second.started = true;
                    it->second.submitted_at = Clock::now();
                    running_++;
                    llm_.submit(std::move(*request));
                });
            }
            continue;
        }

        End end = g.end;
        bool has_end = g.has_end;
        bool stop_upstream = false;
        if (!has_end && (g.cancel_requested || !active)) {
            has_end = true;
            end = End{false, "cancelled", {}};
            stop_upstream = true;
        }
        if (!has_end && !delta_due(g, pass_time_)) continue;  // its next delta waits for its turn
        // The whole answer must fit in one assistant_done event: text beyond
        // max_event_size is cut off, as a model's own length limit would.
        size_t content_room = event_size_limit() - kDoneEventReserve;
        size_t content_json_size = g.content_json_size;
        size_t written =
            prefix_that_fits(g.pending, content_room - std::min(content_room, content_json_size), content_json_size);
        if (written < g.pending.size() && !(has_end && end.error)) {
            has_end = true;
            end = End{false, "length", {}};
            stop_upstream = true;
        }
        std::string delta = g.pending.substr(0, written);
        if (!delta.empty()) append("assistant_delta", Json{{"message_id", g.message_id}, {"delta", delta}});
        if (has_end) {
            if (end.error) {
                append("assistant_error",
                       Json{{"message_id", g.message_id}, {"code", end.reason}, {"message", end.message}});
                set_status("error");
                plan.outcomes.push_back(error_outcome(end.reason));
            } else {
                append(
                    "assistant_done",
                    Json{{"message_id", g.message_id}, {"content", g.content + delta}, {"finish_reason", end.reason}});
                set_status("done");
                plan.outcomes.push_back(done_outcome(end.reason));
            }
        }
        if (written == 0 && !has_end) continue;
        Clock::time_point written_at = pass_time_;
        plan.after_commit.push_back([this, gid, written, content_json_size, has_end, stop_upstream, written_at]() {
            auto it = generations_.find(gid);
            if (it == generations_.end()) return;
            Generation &done = it->second;
            if (written > 0) done.delta_written_at = written_at;
            done.content.append(done.pending, 0, written);
            done.content_json_size = content_json_size;
            done.pending.erase(0, written);
            if (stop_upstream) llm_.abort(gid);
            if (has_end) remove(gid);
        });
    }

    log.set_generation_statuses(plan.statuses);
}

LlmRequest Generations::build_request(const Generation &g, const std::vector<ContextMessage> &history) {
    LlmRequest request;
    request.id = g.id;

    if (settings.llm_provider == LLM_PROVIDER_ECHO) {
        request.echo = true;
        if (!history.empty()) request.echo_message = history.front().content;
        return request;
    }

    Json messages = Json::array();
    if (settings.llm_system_prompt != nullptr && settings.llm_system_prompt[0] != '\0')
        messages.push_back(Json{{"role", "system"}, {"content", settings.llm_system_prompt}});
    for (auto it = history.rbegin(); it != history.rend(); ++it) {
        if (it->content.empty()) continue;  // e.g. an answer cancelled before its first word
        messages.push_back(Json{{"role", it->from_user ? "user" : "assistant"}, {"content", it->content}});
    }
    Json body{{"model", settings.llm_model ? settings.llm_model : ""}, {"stream", true}, {"messages", messages}};
    request.body = dump(body);

    std::string base = settings.llm_base_url ? settings.llm_base_url : "";
    while (!base.empty() && base.back() == '/') base.pop_back();
    request.url = base + "/chat/completions";
    const char *key = settings.llm_api_key;
    if (key == nullptr || key[0] == '\0') key = getenv("OPENAI_API_KEY");
    if (key != nullptr) request.api_key = key;
    request.connect_timeout_ms = settings.llm_connect_timeout_ms;
    request.idle_timeout_ms = settings.llm_idle_timeout_ms;
    request.max_retries = settings.llm_max_retries;
    // A runaway or hostile upstream cannot grow an answer without bound.
    request.max_answer_bytes = event_size_limit();
    return request;
}

}  // namespace rws
