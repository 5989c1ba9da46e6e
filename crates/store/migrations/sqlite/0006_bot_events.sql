-- Bots' state changes are optimistic: whoever computed a change from version N writes it only
-- if the bot is still at N (a fill computed from a stale deal would overwrite another fill).
ALTER TABLE bots ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
-- The live-events feed resumes a user's bot orders as it does triggers (see 0004).
CREATE INDEX IF NOT EXISTS bot_orders_user_created_idx ON bot_orders (user_id, created_at, id);
-- What an order did to its deal, as of the order (the deal row only holds its latest state):
-- the live events and their replay show it.
ALTER TABLE bot_orders ADD COLUMN deal_number INTEGER;
ALTER TABLE bot_orders ADD COLUMN average_price REAL;
ALTER TABLE bot_orders ADD COLUMN realized_pnl REAL;
UPDATE bot_orders SET deal_number = (SELECT number FROM bot_deals d WHERE d.id = bot_orders.deal_id)
    WHERE deal_number IS NULL;
