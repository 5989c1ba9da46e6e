-- Deleting an alert cascades to its triggers and from each to its notifications: without an
-- index on notifications.trigger_id, every deleted trigger scans the whole table.
CREATE INDEX IF NOT EXISTS notifications_trigger_idx ON notifications (trigger_id);
