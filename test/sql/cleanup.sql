-- cleanup() deletes sessions idle for longer than asked, with their events
-- and keys, but never one with a live connection.
DELETE FROM resumable_ws.ws_sessions;
SELECT resumable_ws.create_session('44444444-4444-4444-4444-444444444444', '{"n":"old"}') AS old \gset
SELECT resumable_ws.create_session('44444444-4444-4444-4444-444444444444', '{"n":"old_live"}') AS old_live \gset
SELECT resumable_ws.create_session('44444444-4444-4444-4444-444444444444', '{"n":"fresh"}') AS fresh \gset
SELECT resumable_ws.publish(s, 'note', '{}') FROM unnest(ARRAY[:'old', :'old_live', :'fresh']::uuid[]) s;
INSERT INTO resumable_ws.ws_idempotency_keys (session_id, idempotency_key, event_id)
VALUES (:'old', gen_random_uuid(), 1);
UPDATE resumable_ws.ws_sessions SET updated_at = now() - interval '2 days'
 WHERE id IN (:'old', :'old_live');
INSERT INTO resumable_ws.ws_live_connections (session_id, user_id, worker_pid)
VALUES (:'old_live', '44444444-4444-4444-4444-444444444444', 0);

SELECT resumable_ws.cleanup('1 day') AS deleted;
SELECT metadata->>'n' AS kept FROM resumable_ws.ws_sessions ORDER BY 1;
SELECT count(*) AS orphan_events FROM resumable_ws.ws_events e
 WHERE NOT EXISTS (SELECT 1 FROM resumable_ws.ws_sessions s WHERE s.id = e.session_id);
SELECT count(*) AS keys_left FROM resumable_ws.ws_idempotency_keys;
SELECT resumable_ws.cleanup('1 day') AS deleted_again;
DELETE FROM resumable_ws.ws_live_connections;
SELECT resumable_ws.cleanup(NULL);
