-- Webhook dispatch (issue 6): outbox kinds and per-action secrets, receivers' responses,
-- webhook actions disabled by a 410 Gone, per-user signing secrets. Idempotent like 0001.

-- The outbox carries bot orders too ('bot': url is the bot id, payload a JSON object), and
-- an alert action's own signing secret (never shown by user-facing listings).
ALTER TABLE webhook_deliveries ADD COLUMN IF NOT EXISTS kind text NOT NULL DEFAULT 'webhook'
    CONSTRAINT webhook_deliveries_kind_check CHECK (kind IN ('webhook', 'bot'));
ALTER TABLE webhook_deliveries ADD COLUMN IF NOT EXISTS secret text;
-- Claims take one kind at a time in due order: a kind no process handles (bot rows without
-- a bot handler) stays pending without slowing the claims of the others.
DROP INDEX IF EXISTS webhook_deliveries_due_idx;
CREATE INDEX IF NOT EXISTS webhook_deliveries_due_kind_idx
    ON webhook_deliveries (kind, next_attempt_at) WHERE status = 'pending';

-- The start of the receiver's response (the dispatcher truncates it).
ALTER TABLE webhook_attempts ADD COLUMN IF NOT EXISTS response_body text;

-- A webhook action whose receiver said 410 Gone: its deliveries are cancelled until the user
-- replaces the alert (a new URL). Deleted with the alert (alert_runner_cascade_alerts).
CREATE TABLE IF NOT EXISTS disabled_webhooks (
    alert_id      uuid NOT NULL,
    action_index  integer NOT NULL,
    user_id       uuid NOT NULL,
    reason        text NOT NULL,
    disabled_at   timestamptz NOT NULL,
    PRIMARY KEY (alert_id, action_index)
);

-- Each user's webhook signing secret; after a rotation the previous one stays valid (and is
-- sent as a second signature) until previous_expires_at.
CREATE TABLE IF NOT EXISTS webhook_secrets (
    user_id              uuid PRIMARY KEY,
    secret               text NOT NULL,
    previous_secret      text,
    previous_expires_at  timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    rotated_at           timestamptz
);

CREATE OR REPLACE FUNCTION alert_runner_cascade_alerts() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    DELETE FROM alert_triggers t USING gone g WHERE t.alert_id = g.id;
    DELETE FROM disabled_webhooks w USING gone g WHERE w.alert_id = g.id;
    RETURN NULL;
END
$$;

-- Row-level security as on every user table (see 0001).
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['disabled_webhooks', 'webhook_secrets']
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
