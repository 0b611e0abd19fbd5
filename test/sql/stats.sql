-- The stats view and connections(): shape, privileges, and published events
-- counted at commit only.
SELECT count(*) AS rows FROM resumable_ws.stats;
SELECT count(*) AS columns FROM information_schema.columns
 WHERE table_schema = 'resumable_ws' AND table_name = 'stats';
SELECT pg_typeof(commit_seconds_sum) AS sum_type, pg_typeof(worker_started_at) AS start_type
  FROM resumable_ws.stats;

-- Counts for everyone; user ids and addresses for pg_read_all_stats.
CREATE ROLE rws_stats_reader;
SELECT has_table_privilege('rws_stats_reader', 'resumable_ws.stats', 'SELECT') AS stats_readable,
       has_function_privilege('rws_stats_reader', 'resumable_ws.connections()', 'EXECUTE') AS connections_plain,
       has_function_privilege('pg_read_all_stats', 'resumable_ws.connections()', 'EXECUTE') AS connections_stats_role;
DROP ROLE rws_stats_reader;
SELECT p.proname, p.proconfig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'resumable_ws' AND p.proname IN ('_stats', 'connections') ORDER BY 1;

-- Published events count when they commit, not when they roll back
-- (whole transactions or savepoints).
SELECT resumable_ws.create_session('44444444-4444-4444-4444-444444444444') AS s \gset
SELECT events_appended_publish AS before FROM resumable_ws.stats \gset
SELECT resumable_ws.publish(:'s', 'note', '{}');
BEGIN;
SELECT resumable_ws.publish(:'s', 'note', '{}');
ROLLBACK;
BEGIN;
SELECT resumable_ws.publish(:'s', 'note', '{}');
SAVEPOINT a;
SELECT resumable_ws.publish(:'s', 'note', '{}');
SAVEPOINT b;
SELECT resumable_ws.publish(:'s', 'note', '{}');
ROLLBACK TO SAVEPOINT a;
SELECT resumable_ws.publish(:'s', 'note', '{}');
RELEASE SAVEPOINT a;
COMMIT;
SET rws_test.session = :'s';
DO $$
BEGIN
    PERFORM resumable_ws.publish(current_setting('rws_test.session')::uuid, 'note', '{}');
    RAISE EXCEPTION 'undone by the exception block';
EXCEPTION WHEN raise_exception THEN NULL;
END $$;
SELECT events_appended_publish - :before AS published FROM resumable_ws.stats;
SELECT count(*) AS stored FROM resumable_ws.ws_events WHERE session_id = :'s';
