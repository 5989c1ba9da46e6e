-- DCA bots (seed 002): a bot owns alerts (its entry, safety orders, take profit, stop loss),
-- deals and orders. Deleting a bot deletes them all (the alerts' tombstones tell runners).
CREATE TABLE IF NOT EXISTS bots (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    name          TEXT NOT NULL,
    pair          TEXT NOT NULL,
    timeframe     TEXT NOT NULL,
    definition    TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused')),
    deals_opened  INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS bots_user_idx ON bots (user_id, created_at, id);

ALTER TABLE alerts ADD COLUMN bot_id TEXT REFERENCES bots (id) ON DELETE CASCADE;
ALTER TABLE alerts ADD COLUMN bot_role TEXT;
CREATE INDEX IF NOT EXISTS alerts_bot_idx ON alerts (bot_id) WHERE bot_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS bot_deals (
    id            TEXT PRIMARY KEY,
    bot_id        TEXT NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    user_id       TEXT NOT NULL,
    number        INTEGER NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    opened_at     INTEGER NOT NULL,
    closed_at     INTEGER,
    entry_price   REAL NOT NULL,
    base_qty      REAL NOT NULL,
    cost          REAL NOT NULL,
    fees          REAL NOT NULL,
    filled        TEXT NOT NULL DEFAULT '[]',
    exit          TEXT,
    realized_pnl  REAL,
    UNIQUE (bot_id, number)
);
CREATE UNIQUE INDEX IF NOT EXISTS bot_deals_open_idx ON bot_deals (bot_id) WHERE status = 'open';

CREATE TABLE IF NOT EXISTS bot_orders (
    id               TEXT PRIMARY KEY,
    bot_id           TEXT NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    deal_id          TEXT NOT NULL REFERENCES bot_deals (id) ON DELETE CASCADE,
    user_id          TEXT NOT NULL,
    client_order_id  TEXT NOT NULL UNIQUE,
    role             TEXT NOT NULL,
    side             TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    price            REAL NOT NULL,
    base_qty         REAL NOT NULL,
    notional         REAL NOT NULL,
    fee              REAL NOT NULL,
    created_at       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS bot_orders_bot_idx ON bot_orders (bot_id, created_at, id);
