-- The SQL API: sessions, dense per-session ids, rollback, close, tokens.
CREATE EXTENSION resumable_ws;

SELECT resumable_ws.create_session('11111111-1111-1111-1111-111111111111') AS s \gset
SELECT resumable_ws.create_session('11111111-1111-1111-1111-111111111111', '{"topic":"x"}') AS s2 \gset
SELECT user_id, status, last_event_id, metadata FROM resumable_ws.ws_sessions
 WHERE id IN (:'s', :'s2') ORDER BY metadata::text;

-- Ids are dense per session, starting at 1, independent across sessions.
SELECT resumable_ws.publish(:'s', 'note', '{"n":1}');
SELECT resumable_ws.publish(:'s', 'note', '{"n":2}');
SELECT resumable_ws.publish(:'s2', 'note', '{"n":1}');

-- A rolled-back event leaves no gap: its id is used by the next commit.
BEGIN;
SELECT resumable_ws.publish(:'s', 'note', '{"n":"rolled back"}');
ROLLBACK;
SELECT resumable_ws.publish(session_id => :'s', event_type => 'note', payload => '{"n":3}');
SELECT resumable_ws.publish(:'s', 'no_payload', NULL);

SELECT id, event_type, payload FROM resumable_ws.ws_events WHERE session_id = :'s' ORDER BY id;
SELECT last_event_id FROM resumable_ws.ws_sessions WHERE id = :'s';
-- Property: ids are exactly 1..last_event_id for every session.
SELECT s.id = :'s' AS first, count(e.id) = s.last_event_id AS dense,
       min(e.id) = 1 AND max(e.id) = s.last_event_id AS bounded
  FROM resumable_ws.ws_sessions s JOIN resumable_ws.ws_events e ON e.session_id = s.id
 GROUP BY s.id, s.last_event_id ORDER BY 1;

-- Bad input.
SELECT resumable_ws.publish(:'s', '', '{}');
SELECT resumable_ws.publish(NULL, 'note', '{}');
SELECT resumable_ws.publish('00000000-0000-0000-0000-000000000001', 'note', '{}');

-- An event up to resumable_ws.max_event_size (1MB: its payload as JSON text,
-- {"data": "…"}, plus its event_type) is taken; one byte more is refused.
SELECT resumable_ws.publish(:'s', 'big', jsonb_build_object('data', repeat('x', 1048576 - 15))) > 0 AS at_limit;
SELECT resumable_ws.publish(:'s', 'big', jsonb_build_object('data', repeat('x', 1048576 - 14)));
SELECT resumable_ws.publish(:'s', repeat('t', 1048576), '{}');
SELECT count(*) AS big_events FROM resumable_ws.ws_events WHERE session_id = :'s' AND event_type = 'big';

-- Closing.
SELECT resumable_ws.close_session(:'s2');
SELECT resumable_ws.close_session(:'s2');
SELECT status, closed_at IS NOT NULL AS has_closed_at FROM resumable_ws.ws_sessions WHERE id = :'s2';
\set VERBOSITY sqlstate
SELECT resumable_ws.publish(:'s2', 'note', '{}');
\set VERBOSITY default
SELECT resumable_ws.close_session('00000000-0000-0000-0000-000000000001');

-- Tokens: three base64url parts, HS256 header, the claims asked for, and a
-- signature that is HMAC-SHA256 of the first two parts with the secret.
CREATE EXTENSION pgcrypto;
CREATE FUNCTION pg_temp.b64url_decode(t text) RETURNS bytea LANGUAGE sql AS $$
  SELECT decode(rpad(translate(t, '-_', '+/'), (length(t) + 3) / 4 * 4, '='), 'base64') $$;
SELECT resumable_ws.sign_token('22222222-2222-2222-2222-222222222222', '10 minutes') AS tok \gset
SELECT array_length(string_to_array(:'tok', '.'), 1) AS parts;
SELECT convert_from(pg_temp.b64url_decode(split_part(:'tok', '.', 1)), 'utf8')::jsonb AS header;
SELECT c->>'sub' AS sub, c->>'aud' AS aud, c->>'role' AS role,
       (c->>'exp')::bigint - (c->>'iat')::bigint AS ttl_seconds
  FROM (SELECT convert_from(pg_temp.b64url_decode(split_part(:'tok', '.', 2)), 'utf8')::jsonb AS c) claims;
SELECT pg_temp.b64url_decode(split_part(:'tok', '.', 3))
       = hmac(split_part(:'tok', '.', 1) || '.' || split_part(:'tok', '.', 2),
              'regress-secret-0123456789-0123456789', 'sha256') AS signature_valid;
SELECT resumable_ws.sign_token('22222222-2222-2222-2222-222222222222', '-1 hour');
SELECT resumable_ws.sign_token('22222222-2222-2222-2222-222222222222', '400 days');

-- Layout: RLS on every table; live connections are unlogged.
SELECT c.relname, c.relrowsecurity, c.relpersistence
  FROM pg_class c WHERE c.relnamespace = 'resumable_ws'::regnamespace AND c.relkind = 'r'
 ORDER BY c.relname;
