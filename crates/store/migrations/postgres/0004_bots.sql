-- DCA bots (seed 002): a bot owns alerts (its entry, safety orders, take profit, stop loss),
-- deals and orders. Deleting a bot deletes them all (the alerts' tombstones tell runners).
CREATE TABLE IF NOT EXISTS bots (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid NOT NULL,
    name          text NOT NULL,
    pair          text NOT NULL,
    timeframe     text NOT NULL,
    definition    jsonb NOT NULL,
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused')),
    deals_opened  integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS bots_user_idx ON bots (user_id, created_at, id);

ALTER TABLE alerts ADD COLUMN IF NOT EXISTS bot_id uuid REFERENCES bots (id) ON DELETE CASCADE;
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS bot_role text;
CREATE INDEX IF NOT EXISTS alerts_bot_idx ON alerts (bot_id) WHERE bot_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS bot_deals (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    bot_id        uuid NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    user_id       uuid NOT NULL,
    number        integer NOT NULL,
    status        text NOT NULL CHECK (status IN ('open', 'closed')),
    opened_at     timestamptz NOT NULL,
    closed_at     timestamptz,
    entry_price   double precision NOT NULL,
    base_qty      double precision NOT NULL,
    cost          double precision NOT NULL,
    fees          double precision NOT NULL,
    -- Safety orders filled, by index: [true, false, …].
    filled        jsonb NOT NULL DEFAULT '[]',
    exit          text,
    realized_pnl  double precision,
    UNIQUE (bot_id, number)
);
-- At most one open deal per bot.
CREATE UNIQUE INDEX IF NOT EXISTS bot_deals_open_idx ON bot_deals (bot_id) WHERE status = 'open';

CREATE TABLE IF NOT EXISTS bot_orders (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    bot_id           uuid NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    deal_id          uuid NOT NULL REFERENCES bot_deals (id) ON DELETE CASCADE,
    user_id          uuid NOT NULL,
    -- The trigger's id: a trigger delivered twice never places two orders.
    client_order_id  text NOT NULL UNIQUE,
    role             text NOT NULL,
    side             text NOT NULL CHECK (side IN ('buy', 'sell')),
    price            double precision NOT NULL,
    base_qty         double precision NOT NULL,
    notional         double precision NOT NULL,
    fee              double precision NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS bot_orders_bot_idx ON bot_orders (bot_id, created_at, id);

-- Row-level security as on every user table (see 0001).
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['bots', 'bot_deals', 'bot_orders']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('DROP POLICY IF EXISTS %I ON %I', t || '_select_own', t);
        EXECUTE format('CREATE POLICY %I ON %I FOR SELECT TO authenticated USING (user_id = (SELECT auth.uid()))',
                       t || '_select_own', t);
        EXECUTE format('DROP POLICY IF EXISTS %I ON %I', t || '_insert_own', t);
        EXECUTE format('CREATE POLICY %I ON %I FOR INSERT TO authenticated WITH CHECK (user_id = (SELECT auth.uid()))',
                       t || '_insert_own', t);
        EXECUTE format('DROP POLICY IF EXISTS %I ON %I', t || '_update_own', t);
        EXECUTE format('CREATE POLICY %I ON %I FOR UPDATE TO authenticated USING (user_id = (SELECT auth.uid())) WITH CHECK (user_id = (SELECT auth.uid()))',
                       t || '_update_own', t);
        EXECUTE format('DROP POLICY IF EXISTS %I ON %I', t || '_delete_own', t);
        EXECUTE format('CREATE POLICY %I ON %I FOR DELETE TO authenticated USING (user_id = (SELECT auth.uid()))',
                       t || '_delete_own', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO authenticated', t);
        EXECUTE format('GRANT ALL ON %I TO service_role', t);
    END LOOP;
END
$$;
