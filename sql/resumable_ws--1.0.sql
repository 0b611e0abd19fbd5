-- resumable_ws 1.0: a durable per-session event log served over WebSocket by
-- the extension's background worker. See README.md and PROTOCOL.md.

\echo Use "CREATE EXTENSION resumable_ws" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------------

CREATE TABLE resumable_ws.ws_sessions (
    session_id       uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id          uuid        NOT NULL,
    status           text        NOT NULL DEFAULT 'active'
                                 CHECK (status IN ('active', 'closed')),
    metadata         jsonb       NOT NULL DEFAULT '{}',
    -- Newest event id. Ids are allocated by incrementing this under the row
    -- lock, so they are dense per session and commit in id order.
    last_event_id    bigint      NOT NULL DEFAULT 0 CHECK (last_event_id >= 0),
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_activity_at timestamptz NOT NULL DEFAULT now(),
    closed_at        timestamptz
) WITH (fillfactor = 70);
-- Every append updates last_event_id and last_activity_at. With no index on
-- either column and free space on each page, those updates are HOT: no index
-- entries, no bloat. (cleanup() scans sessions; it runs rarely.)
CREATE INDEX ws_sessions_user_id_idx ON resumable_ws.ws_sessions (user_id);

CREATE TABLE resumable_ws.ws_events (
    session_id  uuid        NOT NULL
                            REFERENCES resumable_ws.ws_sessions ON DELETE CASCADE,
    id          bigint      NOT NULL CHECK (id > 0),
    event_type  text        NOT NULL CHECK (event_type <> ''),
    payload     jsonb       NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, id)
);

CREATE TABLE resumable_ws.ws_idempotency_keys (
    session_id      uuid        NOT NULL
                                REFERENCES resumable_ws.ws_sessions ON DELETE CASCADE,
    idempotency_key uuid        NOT NULL,
    event_id        bigint      NOT NULL,  -- the user_message event it produced
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, idempotency_key)
);

-- One AI generation per user message: its state survives restarts, so the
-- worker can finish what a crash cut off. The primary key makes a second
-- generation for one message impossible.
CREATE TABLE resumable_ws.ws_generations (
    session_id  uuid        NOT NULL
                            REFERENCES resumable_ws.ws_sessions ON DELETE CASCADE,
    reply_to    bigint      NOT NULL,  -- the user_message event it answers
    message_id  uuid        NOT NULL,  -- assistant message id in its events
    status      text        NOT NULL DEFAULT 'queued'
                            CHECK (status IN ('queued', 'running', 'done', 'error', 'skipped')),
    created_at  timestamptz NOT NULL DEFAULT now(),
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
    connection_id uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    session_id    uuid        NOT NULL,
    user_id       uuid        NOT NULL,
    worker_pid    integer     NOT NULL,
    remote_addr   text,
    connected_at  timestamptz NOT NULL DEFAULT now()
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
-- Internal C functions
-- ---------------------------------------------------------------------------

-- Remembers that this transaction changed a session; at commit the worker
-- serving this database is woken to deliver (or, with closed, to re-check it).
CREATE FUNCTION resumable_ws._wake_at_commit(session_id uuid, closed boolean)
RETURNS void
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'rws_wake_at_commit';

-- ---------------------------------------------------------------------------
-- SQL API
-- ---------------------------------------------------------------------------

CREATE FUNCTION resumable_ws.create_session(user_id uuid, metadata jsonb DEFAULT '{}')
RETURNS uuid
LANGUAGE sql VOLATILE
AS $$
    INSERT INTO resumable_ws.ws_sessions (user_id, metadata)
    VALUES ($1, coalesce($2, '{}'))
    RETURNING session_id
$$;

CREATE FUNCTION resumable_ws.publish(session_id uuid, event_type text, payload jsonb)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
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
           last_activity_at = now()
     WHERE s.session_id = publish.session_id AND s.status = 'active'
    RETURNING s.last_event_id INTO new_id;
    IF new_id IS NULL THEN
        RAISE EXCEPTION 'session % does not exist or is closed', publish.session_id
            USING ERRCODE = 'no_data_found';
    END IF;
    INSERT INTO resumable_ws.ws_events (session_id, id, event_type, payload)
    VALUES (publish.session_id, new_id, publish.event_type, coalesce(publish.payload, '{}'));
    PERFORM resumable_ws._wake_at_commit(publish.session_id, false);
    RETURN new_id;
END
$$;

CREATE FUNCTION resumable_ws.close_session(session_id uuid)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    UPDATE resumable_ws.ws_sessions s
       SET status = 'closed', closed_at = now(), last_activity_at = now()
     WHERE s.session_id = close_session.session_id AND s.status = 'active';
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM resumable_ws._wake_at_commit(close_session.session_id, true);
    RETURN true;
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
AS $$
    WITH gone AS (
        DELETE FROM resumable_ws.ws_sessions s
         WHERE s.last_activity_at < now() - $1
           AND NOT EXISTS (SELECT 1 FROM resumable_ws.ws_live_connections c
                            WHERE c.session_id = s.session_id)
        RETURNING 1
    )
    SELECT count(*) FROM gone
$$;

-- Called once after CREATE EXTENSION so a waiting worker starts at once.
SELECT resumable_ws._wake_at_commit('00000000-0000-0000-0000-000000000000', false);
