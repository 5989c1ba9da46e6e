-- Live events across processes (several shards record triggers; any API instance streams
-- them). Each lane of a user's events (triggers with their notifications; bot orders) has one
-- clock row here. A recording transaction moves its lane's clock to the time it records at —
-- never before the last one, one microsecond past it if need be — just before it commits and
-- notifies `alert_runner_events`. The row lock is held until commit, so a lane's recording
-- times increase in commit order, which is the order NOTIFY delivers in: what an event id says
-- ("everything before T received") stays exact with many writers.
CREATE TABLE IF NOT EXISTS event_lanes (
    lane text PRIMARY KEY,
    at   timestamptz NOT NULL
);
INSERT INTO event_lanes (lane, at) VALUES ('alerts', '-infinity'), ('bots', '-infinity')
    ON CONFLICT (lane) DO NOTHING;
-- Only the service role writes it; users' requests never see it.
ALTER TABLE event_lanes ENABLE ROW LEVEL SECURITY;
