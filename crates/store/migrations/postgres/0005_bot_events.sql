-- Bots' state changes are optimistic: whoever computed a change from version N writes it only
-- if the bot is still at N (a fill computed from a stale deal would overwrite another fill).
ALTER TABLE bots ADD COLUMN IF NOT EXISTS version bigint NOT NULL DEFAULT 0;
-- The live-events feed resumes a user's bot orders as it does triggers (see 0003).
CREATE INDEX IF NOT EXISTS bot_orders_user_created_idx ON bot_orders (user_id, created_at, id);
-- What an order did to its deal, as of the order (the deal row only holds its latest state):
-- the live events and their replay show it.
ALTER TABLE bot_orders ADD COLUMN IF NOT EXISTS deal_number integer;
ALTER TABLE bot_orders ADD COLUMN IF NOT EXISTS average_price double precision;
ALTER TABLE bot_orders ADD COLUMN IF NOT EXISTS realized_pnl double precision;
UPDATE bot_orders o SET deal_number = d.number FROM bot_deals d
    WHERE d.id = o.deal_id AND o.deal_number IS NULL;
