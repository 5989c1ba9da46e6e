-- alert-runner schema for SQLite (the embedded default). Times are epoch milliseconds; ids
-- are uuid text. Every user-facing query in the store filters by user_id (SQLite has no RLS).

CREATE TABLE IF NOT EXISTS alerts (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    name            TEXT NOT NULL,
    symbol          TEXT NOT NULL,
    base_timeframe  TEXT NOT NULL,
    definition      TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'active'
                    CHECK (status IN ('active', 'paused', 'triggered', 'expired')),
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    last_fired_at   INTEGER,
    fire_count      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS alerts_user_idx ON alerts (user_id, created_at, id);
CREATE INDEX IF NOT EXISTS alerts_updated_idx ON alerts (updated_at, id);
CREATE INDEX IF NOT EXISTS alerts_active_idx ON alerts (symbol) WHERE status = 'active';

CREATE TABLE IF NOT EXISTS alert_tombstones (
    alert_id    TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    deleted_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_tombstones_deleted_idx ON alert_tombstones (deleted_at);

CREATE TABLE IF NOT EXISTS alert_triggers (
    id          TEXT PRIMARY KEY,
    alert_id    TEXT NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL,
    symbol      TEXT NOT NULL,
    bar_time    INTEGER NOT NULL,
    fired_at    INTEGER NOT NULL,
    snapshot    TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (alert_id, bar_time)
);
CREATE INDEX IF NOT EXISTS alert_triggers_user_idx ON alert_triggers (user_id, fired_at DESC);

CREATE TABLE IF NOT EXISTS notifications (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    alert_id    TEXT NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    trigger_id  TEXT NOT NULL REFERENCES alert_triggers (id) ON DELETE CASCADE,
    title       TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    read_at     INTEGER
);
CREATE INDEX IF NOT EXISTS notifications_user_idx ON notifications (user_id, created_at DESC);

CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id                TEXT PRIMARY KEY,
    trigger_id        TEXT NOT NULL REFERENCES alert_triggers (id) ON DELETE CASCADE,
    alert_id          TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    action_index      INTEGER NOT NULL,
    url               TEXT NOT NULL,
    payload           TEXT NOT NULL,
    status            TEXT NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'delivered', 'failed', 'cancelled')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   INTEGER NOT NULL,
    last_status_code  INTEGER,
    last_error        TEXT,
    leased_until      INTEGER,
    lease_owner       TEXT,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    delivered_at      INTEGER,
    UNIQUE (trigger_id, action_index)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS webhook_deliveries_user_idx ON webhook_deliveries (user_id, created_at DESC);

CREATE TABLE IF NOT EXISTS webhook_attempts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id   TEXT NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    user_id       TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    attempted_at  INTEGER NOT NULL,
    status_code   INTEGER,
    error         TEXT,
    duration_ms   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_attempts_delivery_idx ON webhook_attempts (delivery_id, attempt);

CREATE TRIGGER IF NOT EXISTS alerts_deleted AFTER DELETE ON alerts
BEGIN
    INSERT INTO alert_tombstones (alert_id, user_id, deleted_at)
    VALUES (OLD.id, OLD.user_id, CAST(unixepoch('subsec') * 1000 AS INTEGER))
    ON CONFLICT (alert_id) DO UPDATE SET deleted_at = excluded.deleted_at;
END;
