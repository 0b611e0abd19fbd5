-- resumable_ws 1.0: a durable per-session event log served over WebSocket by
-- the extension's background worker. See README.md and PROTOCOL.md.

\echo Use "CREATE EXTENSION resumable_ws" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------------

CREATE TABLE resumable_ws.ws_sessions (
    id               uuid        PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
    user_id          uuid        NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- Newest event id. Ids are allocated by incrementing this under the row
    -- lock, so they are dense per session and commit in id order.
    last_event_id    bigint      NOT NULL DEFAULT 0 CHECK (last_event_id >= 0),
    status           text        NOT NULL DEFAULT 'active'
                                 CHECK (status IN ('active', 'closed')),
    metadata         jsonb       NOT NULL DEFAULT '{}',
    closed_at        timestamptz
) WITH (fillfactor = 70);
-- Every append updates last_event_id and updated_at. With no index on either
-- column and free space on each page, those updates are HOT: no index
-- entries, no bloat. (cleanup() scans sessions; it runs rarely.)
CREATE INDEX ws_sessions_user_id_idx ON resumable_ws.ws_sessions (user_id);

CREATE TABLE resumable_ws.ws_events (
    session_id  uuid        NOT NULL
                            REFERENCES resumable_ws.ws_sessions (id) ON DELETE CASCADE,
    id          bigint      NOT NULL CHECK (id > 0),
    event_type  text        NOT NULL CHECK (event_type <> ''),
    payload     jsonb       NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (session_id, id)
);

CREATE TABLE resumable_ws.ws_idempotency_keys (
    session_id      uuid        NOT NULL
                                REFERENCES resumable_ws.ws_sessions (id) ON DELETE CASCADE,
    idempotency_key uuid        NOT NULL,
    event_id        bigint      NOT NULL,  -- the user_message event it produced
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (session_id, idempotency_key)
);

-- One AI generation per user message: its state survives restarts, so the
-- worker can finish what a crash cut off. The primary key makes a second
-- generation for one message impossible.
CREATE TABLE resumable_ws.ws_generations (
    session_id  uuid        NOT NULL
                            REFERENCES resumable_ws.ws_sessions (id) ON DELETE CASCADE,
    reply_to    bigint      NOT NULL,  -- the user_message event it answers
    message_id  uuid        NOT NULL,  -- assistant message id in its events
    status      text        NOT NULL DEFAULT 'queued'
                            CHECK (status IN ('queued', 'running', 'done', 'error', 'skipped')),
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    finished_at timestamptz,
    PRIMARY KEY (session_id, reply_to)
);
CREATE INDEX ws_generations_open_idx ON resumable_ws.ws_generations (created_at)
    WHERE status IN ('queued', 'running');
-- The conversation sent upstream as context: user messages and answers only,
-- found without walking past every delta.
CREATE INDEX ws_events_messages_idx ON resumable_ws.ws_events (session_id, id)
    WHERE event_type IN ('user_message', 'assistant_done');

-- One row per open WebSocket connection; cleared when the worker starts.
CREATE UNLOGGED TABLE resumable_ws.ws_live_connections (
    connection_id uuid        PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
    session_id    uuid        NOT NULL,
    user_id       uuid        NOT NULL,
    worker_pid    integer     NOT NULL,
    remote_addr   text,
    connected_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- When the client last sent anything (a frame or a pong); the worker
    -- writes it in batches, at most every few seconds.
    last_seen_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX ws_live_connections_session_idx ON resumable_ws.ws_live_connections (session_id);

-- Row level security on every table, with no policies: only the owner,
-- superusers and BYPASSRLS roles see rows until the installer adds policies.
ALTER TABLE resumable_ws.ws_sessions         ENABLE ROW LEVEL SECURITY;
ALTER TABLE resumable_ws.ws_events           ENABLE ROW LEVEL SECURITY;
ALTER TABLE resumable_ws.ws_idempotency_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE resumable_ws.ws_generations      ENABLE ROW LEVEL SECURITY;
ALTER TABLE resumable_ws.ws_live_connections ENABLE ROW LEVEL SECURITY;

-- Sessions, events, keys and generations are user data: pg_dump keeps them.
SELECT pg_catalog.pg_extension_config_dump('resumable_ws.ws_sessions', '');
SELECT pg_catalog.pg_extension_config_dump('resumable_ws.ws_events', '');
SELECT pg_catalog.pg_extension_config_dump('resumable_ws.ws_idempotency_keys', '');
SELECT pg_catalog.pg_extension_config_dump('resumable_ws.ws_generations', '');

-- ---------------------------------------------------------------------------
-- Waking the worker
-- ---------------------------------------------------------------------------

-- A committed event, from publish() or any INSERT into ws_events, wakes the
-- worker serving this database; so does a session becoming closed. The
-- triggers remember the session and push it at commit (never on rollback).
-- Trigger functions need no EXECUTE right when they fire, so no role gets a
-- way to wake the worker without writing an event; the inserting backend
-- also refuses events over resumable_ws.max_event_size.
CREATE FUNCTION resumable_ws._on_event_insert()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'rws_on_event_insert';
REVOKE ALL ON FUNCTION resumable_ws._on_event_insert() FROM PUBLIC;
CREATE TRIGGER ws_events_wake_worker
    BEFORE INSERT ON resumable_ws.ws_events
    FOR EACH ROW EXECUTE FUNCTION resumable_ws._on_event_insert();

CREATE FUNCTION resumable_ws._on_session_close()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'rws_on_session_close';
REVOKE ALL ON FUNCTION resumable_ws._on_session_close() FROM PUBLIC;
CREATE TRIGGER ws_sessions_wake_worker_on_close
    BEFORE UPDATE OF status ON resumable_ws.ws_sessions
    FOR EACH ROW WHEN (NEW.status = 'closed' AND OLD.status <> 'closed')
    EXECUTE FUNCTION resumable_ws._on_session_close();

-- Wakes the worker at commit (used below, once CREATE EXTENSION commits).
-- Not for PUBLIC: a role could otherwise make the worker re-read every live
-- session on every commit.
CREATE FUNCTION resumable_ws._wake_at_commit(session_id uuid, closed boolean)
RETURNS void
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'rws_wake_at_commit';
REVOKE ALL ON FUNCTION resumable_ws._wake_at_commit(uuid, boolean) FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- SQL API. Every function pins search_path and qualifies what it calls, so
-- that no object of another role can stand in for ours or pg_catalog's.
-- ---------------------------------------------------------------------------

CREATE FUNCTION resumable_ws.create_session(user_id uuid, metadata jsonb DEFAULT '{}')
RETURNS uuid
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO resumable_ws.ws_sessions (user_id, metadata)
    VALUES ($1, coalesce($2, '{}'))
    RETURNING id
$$;

CREATE FUNCTION resumable_ws.publish(session_id uuid, event_type text, payload jsonb)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id bigint;
BEGIN
    IF publish.session_id IS NULL OR publish.event_type IS NULL OR publish.event_type = '' THEN
        RAISE EXCEPTION 'publish: session_id and a non-empty event_type are required'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The row lock serialises writers of one session: ids are dense and a
    -- later id never commits before an earlier one.
    UPDATE resumable_ws.ws_sessions s
       SET last_event_id = s.last_event_id + 1,
           updated_at = pg_catalog.now()
     WHERE s.id = publish.session_id AND s.status = 'active'
    RETURNING s.last_event_id INTO new_id;
    IF new_id IS NULL THEN
        RAISE EXCEPTION 'session % does not exist or is closed', publish.session_id
            USING ERRCODE = 'no_data_found';
    END IF;
    -- The insert trigger checks the size and wakes the worker at commit.
    INSERT INTO resumable_ws.ws_events (session_id, id, event_type, payload)
    VALUES (publish.session_id, new_id, publish.event_type, coalesce(publish.payload, '{}'));
    RETURN new_id;
END
$$;

CREATE FUNCTION resumable_ws.close_session(session_id uuid)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- The update trigger wakes the worker at commit.
    UPDATE resumable_ws.ws_sessions s
       SET status = 'closed', closed_at = pg_catalog.now(), updated_at = pg_catalog.now()
     WHERE s.id = close_session.session_id AND s.status = 'active';
    RETURN FOUND;
END
$$;

CREATE FUNCTION resumable_ws.sign_token(user_id uuid, ttl interval DEFAULT '1 hour')
RETURNS text
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'rws_sign_token';
REVOKE ALL ON FUNCTION resumable_ws.sign_token(uuid, interval) FROM PUBLIC;

CREATE FUNCTION resumable_ws.cleanup(older_than interval)
RETURNS bigint
LANGUAGE sql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    WITH gone AS (
        DELETE FROM resumable_ws.ws_sessions s
         WHERE s.updated_at < pg_catalog.now() - $1
           AND NOT EXISTS (SELECT 1 FROM resumable_ws.ws_live_connections c
                            WHERE c.session_id = s.id)
        RETURNING 1
    )
    SELECT pg_catalog.count(*) FROM gone
$$;

-- ---------------------------------------------------------------------------
-- Statistics (the pg_stat_statements pattern): counters in shared memory,
-- written by the worker and by committing backends, the same numbers as
-- GET /metrics. Counters start at zero when the server starts.
-- ---------------------------------------------------------------------------

CREATE FUNCTION resumable_ws._stats(
    OUT connections bigint,
    OUT workers bigint,
    OUT worker_started_at timestamptz,
    OUT connections_accepted bigint,
    OUT connections_refused bigint,
    OUT connections_refused_bad_handshake bigint,
    OUT connections_refused_too_many_connections bigint,
    OUT connections_refused_restarting bigint,
    OUT connections_refused_unauthorized bigint,
    OUT connections_refused_forbidden bigint,
    OUT connections_refused_session_not_found bigint,
    OUT connections_refused_internal_error bigint,
    OUT auth_failures bigint,
    OUT auth_failures_missing bigint,
    OUT auth_failures_malformed bigint,
    OUT auth_failures_bad_signature bigint,
    OUT auth_failures_unknown_key bigint,
    OUT auth_failures_expired bigint,
    OUT auth_failures_claims bigint,
    OUT auth_failures_other bigint,
    OUT frames_received bigint,
    OUT frames_sent bigint,
    OUT bytes_received bigint,
    OUT bytes_sent bigint,
    OUT events_appended_client bigint,
    OUT events_appended_generation bigint,
    OUT events_appended_publish bigint,
    OUT events_delivered bigint,
    OUT replays bigint,
    OUT replayed_events bigint,
    OUT slow_consumer_closes bigint,
    OUT generations bigint,
    OUT generations_completed bigint,
    OUT generations_length bigint,
    OUT generations_cancelled bigint,
    OUT generations_error bigint,
    OUT generations_interrupted bigint,
    OUT generations_skipped bigint,
    OUT upstream_tokens bigint,
    OUT llm_queue_length bigint,
    OUT commit_count bigint,
    OUT commit_seconds_sum double precision,
    OUT pass_count bigint,
    OUT pass_seconds_sum double precision,
    OUT time_to_first_token_count bigint,
    OUT time_to_first_token_seconds_sum double precision)
RETURNS record
LANGUAGE c VOLATILE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'rws_stats';

-- Counts only, nothing about users: readable by everyone, as pg_stat_database.
CREATE VIEW resumable_ws.stats AS SELECT * FROM resumable_ws._stats();
GRANT SELECT ON resumable_ws.stats TO PUBLIC;

-- One row per open WebSocket connection, from the workers' shared memory
-- (cursor and queued_bytes are refreshed as events are fed, and once a
-- second). It shows user ids and client addresses: like
-- pg_stat_statements' query texts, for pg_read_all_stats and superusers.
CREATE FUNCTION resumable_ws.connections(
    OUT worker_pid integer,
    OUT user_id uuid,
    OUT session_id uuid,
    OUT cursor bigint,
    OUT queued_bytes bigint,
    OUT connected_at timestamptz,
    OUT remote_addr text)
RETURNS SETOF record
LANGUAGE c VOLATILE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'rws_connections';
REVOKE ALL ON FUNCTION resumable_ws.connections() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION resumable_ws.connections() TO pg_read_all_stats;

-- Called once after CREATE EXTENSION so a waiting worker starts at once.
SELECT resumable_ws._wake_at_commit('00000000-0000-0000-0000-000000000000', false);
