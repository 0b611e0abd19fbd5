-- A plain role can neither sign tokens nor read the secrets, and sees no
-- rows until it is granted access and a policy allows it.
CREATE ROLE rws_plain LOGIN;
SELECT resumable_ws.create_session('33333333-3333-3333-3333-333333333333') AS s \gset
SELECT resumable_ws.publish(:'s', 'note', '{}');

SET ROLE rws_plain;
SELECT resumable_ws.sign_token('33333333-3333-3333-3333-333333333333');
SHOW resumable_ws.jwt_secret;
SELECT current_setting('resumable_ws.llm_api_key');
SELECT count(*) AS visible_secret_settings FROM pg_settings
 WHERE name IN ('resumable_ws.jwt_secret', 'resumable_ws.llm_api_key');
SELECT count(*) FROM resumable_ws.ws_events;
RESET ROLE;

GRANT USAGE ON SCHEMA resumable_ws TO rws_plain;
GRANT SELECT ON resumable_ws.ws_events TO rws_plain;
SET ROLE rws_plain;
SELECT resumable_ws.sign_token('33333333-3333-3333-3333-333333333333');
SELECT count(*) AS rows_without_policy FROM resumable_ws.ws_events;
RESET ROLE;

CREATE POLICY plain_reads ON resumable_ws.ws_events FOR SELECT TO rws_plain USING (true);
SET ROLE rws_plain;
SELECT count(*) AS rows_with_policy FROM resumable_ws.ws_events;
RESET ROLE;

-- Superusers see the secret is set (the value itself is theirs to see).
SELECT current_setting('resumable_ws.jwt_secret') <> '' AS secret_set;

DROP POLICY plain_reads ON resumable_ws.ws_events;
REVOKE ALL ON resumable_ws.ws_events FROM rws_plain;
REVOKE ALL ON SCHEMA resumable_ws FROM rws_plain;
DROP ROLE rws_plain;
