-- Webhook dispatch (issue 6): outbox kinds and per-action secrets, receivers' responses,
-- webhook actions disabled by a 410 Gone, per-user signing secrets.

-- The outbox carries bot orders too ('bot': url is the bot id, payload a JSON object), and
-- an alert action's own signing secret (never shown by user-facing listings).
ALTER TABLE webhook_deliveries ADD COLUMN kind TEXT NOT NULL DEFAULT 'webhook'
    CHECK (kind IN ('webhook', 'bot'));
ALTER TABLE webhook_deliveries ADD COLUMN secret TEXT;
-- Claims take one kind at a time in due order: a kind no process handles stays pending
-- without slowing the claims of the others.
DROP INDEX IF EXISTS webhook_deliveries_due_idx;
CREATE INDEX IF NOT EXISTS webhook_deliveries_due_kind_idx
    ON webhook_deliveries (kind, next_attempt_at) WHERE status = 'pending';

-- The start of the receiver's response (the dispatcher truncates it).
ALTER TABLE webhook_attempts ADD COLUMN response_body TEXT;

-- A webhook action whose receiver said 410 Gone; deleted with its alert.
CREATE TABLE IF NOT EXISTS disabled_webhooks (
    alert_id      TEXT NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    action_index  INTEGER NOT NULL,
    user_id       TEXT NOT NULL,
    reason        TEXT NOT NULL,
    disabled_at   INTEGER NOT NULL,
    PRIMARY KEY (alert_id, action_index)
);

-- Each user's webhook signing secret, and the previous one until it expires.
CREATE TABLE IF NOT EXISTS webhook_secrets (
    user_id              TEXT PRIMARY KEY,
    secret               TEXT NOT NULL,
    previous_secret      TEXT,
    previous_expires_at  INTEGER,
    created_at           INTEGER NOT NULL,
    rotated_at           INTEGER
);
