-- The live-events feed resumes with `WHERE user_id = $1 AND (created_at, id) > ($2, $3)
-- ORDER BY created_at, id`: without these, every reconnect sorts the user's whole history.
CREATE INDEX IF NOT EXISTS alert_triggers_user_created_idx ON alert_triggers (user_id, created_at, id);
-- Serves the notifications list (newest first, backwards) as well, so it replaces the old one.
CREATE INDEX IF NOT EXISTS notifications_user_created_idx ON notifications (user_id, created_at, id);
DROP INDEX IF EXISTS notifications_user_idx;
