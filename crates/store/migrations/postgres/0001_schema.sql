-- alert-runner schema for PostgreSQL (and Supabase). Idempotent: safe to run on a database
-- that already has Supabase's `auth` schema, roles and `auth.uid()`.

-- Roles as Supabase has them; created only if missing (cluster-wide, so tolerate a
-- concurrent creator).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
        BEGIN
            CREATE ROLE authenticated NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
        BEGIN
            CREATE ROLE service_role NOLOGIN BYPASSRLS;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
END
$$;

CREATE SCHEMA IF NOT EXISTS auth;

-- auth.uid(): the JWT's `sub`, as PostgREST sets it (`request.jwt.claims`, or the older
-- `request.jwt.claim.sub`). Created only where Supabase has not provided one.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'auth' AND p.proname = 'uid'
    ) THEN
        CREATE FUNCTION auth.uid() RETURNS uuid
        LANGUAGE sql STABLE
        AS $fn$
            SELECT nullif(
                coalesce(
                    current_setting('request.jwt.claim.sub', true),
                    current_setting('request.jwt.claims', true)::jsonb ->> 'sub'
                ),
                ''
            )::uuid
        $fn$;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA auth TO authenticated, service_role;

CREATE TABLE IF NOT EXISTS alerts (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid NOT NULL,
    name            text NOT NULL,
    symbol          text NOT NULL,
    base_timeframe  text NOT NULL,
    definition      jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'active'
                    CHECK (status IN ('active', 'paused', 'triggered', 'expired')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    last_fired_at   timestamptz,
    fire_count      bigint NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS alerts_user_idx ON alerts (user_id, created_at, id);
CREATE INDEX IF NOT EXISTS alerts_updated_idx ON alerts (updated_at, id);
CREATE INDEX IF NOT EXISTS alerts_active_idx ON alerts (symbol) WHERE status = 'active';

-- Deleted alerts, so the runner's change feed sees deletions.
CREATE TABLE IF NOT EXISTS alert_tombstones (
    alert_id    uuid PRIMARY KEY,
    user_id     uuid NOT NULL,
    deleted_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS alert_tombstones_deleted_idx ON alert_tombstones (deleted_at);

CREATE TABLE IF NOT EXISTS alert_triggers (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    alert_id    uuid NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL,
    symbol      text NOT NULL,
    bar_time    timestamptz NOT NULL,
    fired_at    timestamptz NOT NULL,
    snapshot    jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (alert_id, bar_time)
);
CREATE INDEX IF NOT EXISTS alert_triggers_user_idx ON alert_triggers (user_id, fired_at DESC);

CREATE TABLE IF NOT EXISTS notifications (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL,
    alert_id    uuid NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    trigger_id  uuid NOT NULL REFERENCES alert_triggers (id) ON DELETE CASCADE,
    title       text NOT NULL,
    body        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    read_at     timestamptz
);
CREATE INDEX IF NOT EXISTS notifications_user_idx ON notifications (user_id, created_at DESC);

-- The webhook outbox: written in the trigger's transaction, claimed by dispatch workers.
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    trigger_id        uuid NOT NULL REFERENCES alert_triggers (id) ON DELETE CASCADE,
    alert_id          uuid NOT NULL,
    user_id           uuid NOT NULL,
    action_index      integer NOT NULL,
    url               text NOT NULL,
    payload           text NOT NULL,
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'delivered', 'failed', 'cancelled')),
    attempts          integer NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    last_status_code  integer,
    last_error        text,
    leased_until      timestamptz,
    lease_owner       text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    delivered_at      timestamptz,
    UNIQUE (trigger_id, action_index)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS webhook_deliveries_user_idx ON webhook_deliveries (user_id, created_at DESC);

CREATE TABLE IF NOT EXISTS webhook_attempts (
    id            bigserial PRIMARY KEY,
    delivery_id   uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    user_id       uuid NOT NULL,
    attempt       integer NOT NULL,
    attempted_at  timestamptz NOT NULL,
    status_code   integer,
    error         text,
    duration_ms   integer NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_attempts_delivery_idx ON webhook_attempts (delivery_id, attempt);

-- Tombstones and change notifications for the runner.
CREATE OR REPLACE FUNCTION alert_runner_alert_deleted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    INSERT INTO alert_tombstones (alert_id, user_id, deleted_at)
    VALUES (OLD.id, OLD.user_id, now())
    ON CONFLICT (alert_id) DO UPDATE SET deleted_at = excluded.deleted_at;
    PERFORM pg_notify('alert_runner_alerts', OLD.id::text);
    RETURN OLD;
END
$$;

CREATE OR REPLACE FUNCTION alert_runner_alert_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('alert_runner_alerts', NEW.id::text);
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS alerts_deleted ON alerts;
CREATE TRIGGER alerts_deleted AFTER DELETE ON alerts
    FOR EACH ROW EXECUTE FUNCTION alert_runner_alert_deleted();
DROP TRIGGER IF EXISTS alerts_changed ON alerts;
CREATE TRIGGER alerts_changed AFTER INSERT OR UPDATE ON alerts
    FOR EACH ROW EXECUTE FUNCTION alert_runner_alert_changed();

-- Row-level security, as Supabase does it: every user table is scoped to auth.uid() for the
-- `authenticated` role; `service_role` (the runner and dispatcher) bypasses it.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['alerts', 'alert_tombstones', 'alert_triggers', 'notifications',
                             'webhook_deliveries', 'webhook_attempts']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('DROP POLICY IF EXISTS %I ON %I', t || '_select_own', t);
        EXECUTE format('CREATE POLICY %I ON %I FOR SELECT TO authenticated USING (user_id = auth.uid())',
                       t || '_select_own', t);
        EXECUTE format('DROP POLICY IF EXISTS %I ON %I', t || '_insert_own', t);
        EXECUTE format('CREATE POLICY %I ON %I FOR INSERT TO authenticated WITH CHECK (user_id = auth.uid())',
                       t || '_insert_own', t);
        EXECUTE format('DROP POLICY IF EXISTS %I ON %I', t || '_update_own', t);
        EXECUTE format('CREATE POLICY %I ON %I FOR UPDATE TO authenticated USING (user_id = auth.uid()) WITH CHECK (user_id = auth.uid())',
                       t || '_update_own', t);
        EXECUTE format('DROP POLICY IF EXISTS %I ON %I', t || '_delete_own', t);
        EXECUTE format('CREATE POLICY %I ON %I FOR DELETE TO authenticated USING (user_id = auth.uid())',
                       t || '_delete_own', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO authenticated', t);
        EXECUTE format('GRANT ALL ON %I TO service_role', t);
    END LOOP;
END
$$;
GRANT USAGE, SELECT ON SEQUENCE webhook_attempts_id_seq TO authenticated, service_role;
