#include "request_batch.hpp"

#include "metrics.hpp"
#include "protocol.hpp"
#include "server.hpp"  // close codes
#include "settings.hpp"
#include "uuid.hpp"

#include <nlohmann/json.hpp>

#include "cpp_only.hpp"  // must be last: no Postgres in this file

namespace rws {

static const char kUserMessage[] = "user_message";

void RequestBatch::handle(EventLog &log, AppendBatch &appends, const std::vector<Request> &requests) {
    // The user messages' sessions are locked, and their idempotency keys
    // looked up, in one statement each.
    std::vector<std::string> sessions;
    std::vector<KeyLookup> lookups;
    for (const Request &request : requests)
        if (request.kind == Request::Kind::UserMessage) {
            sessions.push_back(request.session_id);
            lookups.push_back(KeyLookup{request.session_id, request.idempotency_key});
        }
    appends.lock(log, sessions);
    std::vector<FoundKey> found = log.find_idempotency_keys(lookups);

    size_t lookup = 0;
    for (const Request &request : requests) {
        bool is_message = request.kind == Request::Kind::UserMessage;
        // Keep each session's requests in order behind one that had to wait.
        if (!request.session_id.empty() && deferred_sessions.count(request.session_id)) {
            deferred.push_back(request);
        } else {
            switch (request.kind) {
                case Request::Kind::Open: handle_open(log, request); break;
                case Request::Kind::UserMessage: handle_user_message(appends, request, found, lookup); break;
                case Request::Kind::Resume: handle_resume(log, request); break;
                case Request::Kind::Detach: log.remove_live_connection(request.live_row_id); break;
            }
        }
        if (is_message) lookup++;
    }
}

void RequestBatch::handle_open(EventLog &log, const Request &request) {
    Answer answer{Answer::Kind::Opened};
    answer.conn_id = request.conn_id;
    answer.session_id = request.session_id;
    if (!request.session_id.empty()) {
        SessionRow row = log.get_session(request.session_id);
        if (!row.found || !row.active || row.user_id != request.user_id) {
            bool missing = !row.found || !row.active;
            answer.kind = Answer::Kind::Refused;
            answer.code = missing ? "session_not_found" : "forbidden";
            answer.message = missing ? "no such session, or it is closed" : "this session belongs to another user";
            answer.close_code = missing ? kCloseSessionNotFound : kCloseForbidden;
            answer.refusal = missing ? kRefuseSessionNotFound : kRefuseForbidden;
            answers.push_back(std::move(answer));
            return;
        }
        answer.head = row.last_event_id;
        answer.resumed = true;
    } else {
        answer.session_id = log.create_session(request.user_id);
    }
    answer.live_row_id = log.add_live_connection(answer.session_id, request.user_id, worker_pid_, request.remote_addr);
    answers.push_back(std::move(answer));
}

void RequestBatch::handle_user_message(AppendBatch &appends, const Request &request, const std::vector<FoundKey> &found,
                                       size_t lookup) {
    const std::string &session_id = request.session_id;
    const std::string &key = request.idempotency_key;
    Answer answer{Answer::Kind::Acked};
    answer.conn_id = request.conn_id;
    answer.key = key;

    const AppendBatch::SessionState &session = appends.session(session_id);
    if (session.lock == AppendBatch::Lock::Busy) {
        // Another transaction holds the session (a long publish()): the
        // worker never waits on it; try again on a later pass.
        deferred.push_back(request);
        deferred_sessions.insert(session_id);
        return;
    }
    if (session.lock == AppendBatch::Lock::Missing || !session.active) {
        answer.kind = Answer::Kind::Error;
        answer.code = "session_not_found";
        answer.message = "the session is closed";
        answers.push_back(std::move(answer));
        return;
    }

    // A key used before: earlier in this batch, or in the log.
    bool used = false;
    int64_t original_id = 0;
    const std::string *original_content = nullptr;
    if (const auto *pending = appends.pending_key(session_id, key)) {
        used = true;
        original_id = pending->first;
        original_content = &pending->second;
    }
    for (const FoundKey &row : found)
        if (!used && row.lookup == lookup) {
            used = true;
            original_id = row.event_id;
            original_content = &row.content;
        }
    if (used) {
        if (*original_content == request.content) {
            answer.event_id = original_id;
            answer.duplicate = true;
        } else {
            answer.kind = Answer::Kind::Error;
            answer.code = "idempotency_conflict";
            answer.message = "this idempotency_key was used with other content";
        }
        answers.push_back(std::move(answer));
        return;
    }

    nlohmann::ordered_json payload{{"content", request.content}, {"idempotency_key", key}};
    std::string payload_json = payload.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    if (payload_json.size() + sizeof(kUserMessage) - 1 > event_size_limit()) {
        // Frames are capped below this (Server::message_limit()), and a
        // stored message is never larger than its frame; kept as a guard.
        answer.kind = Answer::Kind::Close;
        answer.close_code = kCloseTooBig;
        answer.message = "message too big";
        answers.push_back(std::move(answer));
        return;
    }
    answer.event_id = appends.append(session_id, kUserMessage, std::move(payload_json));
    appends.add_idempotency_key(session_id, key, answer.event_id, request.content);
    // Each new user message gets one generation; its row's primary key is the
    // message, so a generation can never be started twice for it.
    if (settings.llm_provider != LLM_PROVIDER_NONE) {
        answer.message_id = random_uuid();
        appends.add_generation(session_id, answer.event_id, answer.message_id);
    }
    answer.session_id = session_id;
    appended++;
    answers.push_back(std::move(answer));
}

void RequestBatch::handle_resume(EventLog &log, const Request &request) {
    Answer answer{Answer::Kind::Rewound};
    answer.conn_id = request.conn_id;
    answer.cursor = request.last_event_id;
    answer.head = log.get_session(request.session_id).last_event_id;
    answers.push_back(std::move(answer));
}

Answer RequestBatch::failure(const Request &request) {
    Answer answer{Answer::Kind::Error};
    answer.conn_id = request.conn_id;
    switch (request.kind) {
        case Request::Kind::Open:
            answer.kind = Answer::Kind::Refused;
            answer.code = "internal_error";
            answer.message = "the session could not be opened";
            answer.close_code = kCloseInternal;
            answer.refusal = kRefuseInternalError;
            break;
        case Request::Kind::UserMessage:
        case Request::Kind::Resume:
            answer.code = "internal_error";
            answer.message = "the request failed; retry it";
            break;
        case Request::Kind::Detach: answer.conn_id = 0; break;  // nobody to tell
    }
    return answer;
}

}  // namespace rws
