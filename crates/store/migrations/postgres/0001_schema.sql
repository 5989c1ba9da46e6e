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
            -- nullif: a setting made with set_config(..., true) reads as '' (not NULL) on
            -- the same connection after its transaction ends, and ''::jsonb is an error.
            SELECT coalesce(
                nullif(current_setting('request.jwt.claim.sub', true), ''),
                nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'
            )::uuid
        $fn$;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA auth TO authenticated, service_role;

-- The store runs user requests as `authenticated` (SET ROLE): the connecting role must be a
-- member (Supabase's `postgres` is; a superuser needs nothing). Where it is not, and may grant
-- it (it created the role), grant it; otherwise user-facing calls will fail with "permission
-- denied to set role", which names the fix.
DO $$
DECLARE
    can_set boolean;
BEGIN
    IF current_setting('server_version_num')::int >= 160000 THEN
        can_set := pg_has_role(current_user, 'authenticated', 'SET');
    ELSE
        can_set := pg_has_role(current_user, 'authenticated', 'MEMBER');
    END IF;
    IF NOT can_set THEN
        BEGIN
            EXECUTE format('GRANT authenticated TO %I', current_user);
        EXCEPTION WHEN insufficient_privilege OR invalid_grant_operation THEN
            RAISE WARNING 'alert-runner: role % cannot SET ROLE authenticated: GRANT authenticated TO %', current_user, current_user;
        END;
    END IF;
END
$$;

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
) WITH (fillfactor = 80);
-- Room on each page, so recording a trigger (fire_count, last_fired_at: no indexed column)
-- updates the row in place (HOT) without touching the indexes.
ALTER TABLE alerts SET (fillfactor = 80);
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
    alert_id    uuid NOT NULL,  -- deleted with its alert (alert_runner_cascade_alerts)
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
    alert_id    uuid NOT NULL,
    trigger_id  uuid NOT NULL,  -- deleted with its trigger (alert_runner_cascade_triggers)
    title       text NOT NULL,
    body        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    read_at     timestamptz
);
CREATE INDEX IF NOT EXISTS notifications_trigger_idx ON notifications (trigger_id);
CREATE INDEX IF NOT EXISTS notifications_user_idx ON notifications (user_id, created_at DESC);

-- The webhook outbox: written in the trigger's transaction, claimed by dispatch workers.
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    trigger_id        uuid NOT NULL,  -- deleted with its trigger (alert_runner_cascade_triggers)
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

-- Cascades. A trigger's rows are written in one statement with the trigger, for an alert that
-- statement holds locked (see the store's record_triggers), so foreign keys would only add
-- a check per row on the hot path (a fifth of its time); statement-level triggers delete
-- the dependent rows instead, whoever deletes (the API, an operator, a retention job).
-- SECURITY DEFINER: a user's delete (as `authenticated`) cascades like a foreign key does,
-- whatever the policies say.
CREATE OR REPLACE FUNCTION alert_runner_cascade_alerts() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    DELETE FROM alert_triggers t USING gone g WHERE t.alert_id = g.id;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION alert_runner_cascade_triggers() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    DELETE FROM notifications n USING gone g WHERE n.trigger_id = g.id;
    DELETE FROM webhook_deliveries d USING gone g WHERE d.trigger_id = g.id;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS alerts_cascade ON alerts;
CREATE TRIGGER alerts_cascade AFTER DELETE ON alerts
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION alert_runner_cascade_alerts();
DROP TRIGGER IF EXISTS alert_triggers_cascade ON alert_triggers;
CREATE TRIGGER alert_triggers_cascade AFTER DELETE ON alert_triggers
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION alert_runner_cascade_triggers();

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
-- Every change the runner must see moves updated_at (the change feed's key); recording a
-- trigger (fire_count, last_fired_at) does not, and needs no notification.
DROP TRIGGER IF EXISTS alerts_changed ON alerts;
DROP TRIGGER IF EXISTS alerts_inserted ON alerts;
CREATE TRIGGER alerts_inserted AFTER INSERT ON alerts
    FOR EACH ROW EXECUTE FUNCTION alert_runner_alert_changed();
DROP TRIGGER IF EXISTS alerts_updated ON alerts;
CREATE TRIGGER alerts_updated AFTER UPDATE ON alerts
    FOR EACH ROW WHEN (OLD.updated_at IS DISTINCT FROM NEW.updated_at OR OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION alert_runner_alert_changed();

-- Row-level security, as Supabase does it: every user table is scoped to auth.uid() for the
-- `authenticated` role. RLS is enabled and forced, so even the tables' owner is scoped: the
-- runner and dispatcher must connect as a role that bypasses RLS (a superuser, a BYPASSRLS
-- role such as `service_role`, or Supabase's `postgres`). `(SELECT auth.uid())` is evaluated
-- once per statement, not once per row.
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
GRANT USAGE, SELECT ON SEQUENCE webhook_attempts_id_seq TO authenticated, service_role;
