//! Live events across processes (PostgreSQL): what was just recorded, announced on channel
//! [`EVENT_CHANNEL`] by the transaction that recorded it, so that every API instance can
//! stream each user's events wherever they were recorded (a shard's runner, a dispatcher's
//! bot handler, another API instance's "close deal now").
//!
//! Event ids (see `alert-api`'s events module) say "everything recorded before `T` was
//! received", which is exact only if a lane's recording times increase in the order its
//! writes become visible. With one writer that is its clock; with several it is made so here:
//! each lane (triggers with their notifications; bot orders) has a clock row in
//! `event_lanes`. A recording transaction moves it, just before it commits, to the time it
//! records at — or one microsecond past the lane's last time if another writer got further —
//! and records at that time. The row lock is held until commit, so the lane's times increase in
//! commit order, and NOTIFY delivers in commit order: a listener sees each lane's events in
//! time order. The lock is held only from that update to the commit, not while the rows are
//! written.
//!
//! A notification names the rows (never their contents: a payload holds 8,000 bytes at most,
//! a snapshot may not fit); a listener reads those of its subscribed users by id.

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgListener, PgNotification};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::{BotOrderRow, NotificationRow, RecordedTrigger, Store, StoreError};

/// The channel recording transactions notify on.
pub const EVENT_CHANNEL: &str = "alert_runner_events";
/// Largest payload sent (PostgreSQL refuses 8,000 bytes or more).
const MAX_PAYLOAD: usize = 7_900;

/// A lane of a user's events (its rows' times increase in commit order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lane {
    Alerts,
    Bots,
}

impl Lane {
    fn name(self) -> &'static str {
        match self {
            Lane::Alerts => "alerts",
            Lane::Bots => "bots",
        }
    }
}

/// A trigger recorded, with its notification if it has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TriggerRef {
    pub user: Uuid,
    pub trigger: Uuid,
    pub notification: Option<Uuid>,
}

/// What one notification says was committed, in recording order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventNotice {
    Triggers(Vec<TriggerRef>),
    /// (user, order) pairs.
    BotOrders(Vec<(Uuid, Uuid)>),
}

impl EventNotice {
    /// Every user it concerns (with repeats).
    pub fn users(&self) -> Box<dyn Iterator<Item = Uuid> + '_> {
        match self {
            EventNotice::Triggers(refs) => Box::new(refs.iter().map(|r| r.user)),
            EventNotice::BotOrders(pairs) => Box::new(pairs.iter().map(|(u, _)| *u)),
        }
    }

    /// The payloads announcing it, each below PostgreSQL's limit, in order.
    pub(crate) fn payloads(&self) -> Vec<String> {
        let (tag, entries): (&str, Vec<String>) = match self {
            EventNotice::Triggers(refs) => (
                "t",
                refs.iter()
                    .map(|r| match r.notification {
                        Some(n) => format!("{},{},{n}", r.user, r.trigger),
                        None => format!("{},{}", r.user, r.trigger),
                    })
                    .collect(),
            ),
            EventNotice::BotOrders(pairs) => {
                ("b", pairs.iter().map(|(u, o)| format!("{u},{o}")).collect())
            }
        };
        let mut out = Vec::new();
        let mut current = String::from(tag);
        for entry in entries {
            if current.len() + 1 + entry.len() > MAX_PAYLOAD {
                out.push(std::mem::replace(&mut current, String::from(tag)));
            }
            current.push(' ');
            current.push_str(&entry);
        }
        if current.len() > tag.len() {
            out.push(current);
        }
        out
    }

    /// A payload back; `None` if it is not one this version sends.
    pub fn parse(payload: &str) -> Option<Self> {
        let mut words = payload.split(' ');
        let tag = words.next()?;
        let ids = |entry: &str| -> Option<Vec<Uuid>> {
            entry.split(',').map(|s| Uuid::parse_str(s).ok()).collect()
        };
        match tag {
            "t" => words
                .map(|entry| match ids(entry)?.as_slice() {
                    [user, trigger] => Some(TriggerRef {
                        user: *user,
                        trigger: *trigger,
                        notification: None,
                    }),
                    [user, trigger, note] => Some(TriggerRef {
                        user: *user,
                        trigger: *trigger,
                        notification: Some(*note),
                    }),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .map(EventNotice::Triggers),
            "b" => words
                .map(|entry| match ids(entry)?.as_slice() {
                    [user, order] => Some((*user, *order)),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .map(EventNotice::BotOrders),
            _ => None,
        }
    }
}

/// Moves `lane`'s clock to `at` — or one microsecond past its last time if that is not
/// earlier — and returns the time to record at. Takes the lane's row lock until commit: call
/// it last before [`announce`] and the commit.
pub(crate) async fn move_lane(
    conn: &mut PgConnection,
    lane: Lane,
    at: DateTime<Utc>,
) -> Result<DateTime<Utc>, StoreError> {
    let moved: Option<DateTime<Utc>> = sqlx::query_scalar(
        "UPDATE event_lanes SET at = GREATEST(at + interval '1 microsecond', $2) \
         WHERE lane = $1 RETURNING at",
    )
    .bind(lane.name())
    .bind(at)
    .fetch_optional(&mut *conn)
    .await?;
    match moved {
        Some(t) => Ok(t),
        // A schema whose row went missing (deleted by hand): recreate it.
        None => Ok(sqlx::query_scalar(
            "INSERT INTO event_lanes (lane, at) VALUES ($1, $2) \
             ON CONFLICT (lane) DO UPDATE SET at = GREATEST(event_lanes.at + interval '1 microsecond', $2) \
             RETURNING at",
        )
        .bind(lane.name())
        .bind(at)
        .fetch_one(conn)
        .await?),
    }
}

/// Queues `notice`'s notifications in the transaction (sent when it commits).
pub(crate) async fn announce(
    conn: &mut PgConnection,
    notice: &EventNotice,
) -> Result<(), StoreError> {
    let payloads = notice.payloads();
    if payloads.is_empty() {
        return Ok(());
    }
    // A plain function scan yields the array in order: the notifications are queued in it.
    sqlx::query("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
        .bind(EVENT_CHANNEL)
        .bind(payloads)
        .execute(conn)
        .await?;
    Ok(())
}

/// What a listener heard.
#[derive(Debug)]
pub enum Heard {
    Notice(EventNotice),
    /// The connection was lost (what was committed meanwhile was not heard), or a payload this
    /// version cannot read arrived: a listener's subscribers must catch up from the store.
    Gap,
}

/// A connection listening on [`EVENT_CHANNEL`].
pub struct EventListener {
    listener: PgListener,
}

impl std::fmt::Debug for EventListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventListener").finish_non_exhaustive()
    }
}

fn heard(n: &PgNotification) -> Heard {
    match EventNotice::parse(n.payload()) {
        Some(notice) => Heard::Notice(notice),
        None => {
            tracing::warn!(
                payload_bytes = n.payload().len(),
                "an event notification this version cannot read (another version recording?)"
            );
            Heard::Gap
        }
    }
}

impl EventListener {
    /// The next notification; [`Heard::Gap`] once per lost connection (the next call
    /// reconnects; an error if that fails).
    pub async fn next(&mut self) -> Result<Heard, StoreError> {
        match self.listener.try_recv().await? {
            Some(n) => Ok(heard(&n)),
            None => Ok(Heard::Gap),
        }
    }

    /// A notification already received, without waiting.
    pub fn next_buffered(&mut self) -> Option<Heard> {
        self.listener.next_buffered().map(|n| heard(&n))
    }
}

fn postgres_only(store: &Store) -> Result<&PgPool, StoreError> {
    store.pg_pool().ok_or_else(|| {
        StoreError::Config("live events across processes need PostgreSQL".to_owned())
    })
}

impl Store {
    /// Listens for recorded events (PostgreSQL; `None` on SQLite, where one process records
    /// and streams).
    pub async fn listen_events(&self) -> Result<Option<EventListener>, StoreError> {
        let Some(pool) = self.pg_pool() else {
            return Ok(None);
        };
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(EVENT_CHANNEL).await?;
        Ok(Some(EventListener { listener }))
    }

    /// Triggers by id, any user's (service path: what a listener streams).
    pub async fn triggers_by_id(&self, ids: &[Uuid]) -> Result<Vec<RecordedTrigger>, StoreError> {
        rows_by_id(
            self,
            "SELECT * FROM alert_triggers WHERE id = ANY($1)",
            ids,
            |r| {
                use sqlx::Row;
                Ok(RecordedTrigger {
                    trigger: crate::postgres::trigger_row(r)?,
                    recorded_at: r.try_get("created_at")?,
                })
            },
        )
        .await
    }

    /// Notifications by id, any user's (service path).
    pub async fn notifications_by_id(
        &self,
        ids: &[Uuid],
    ) -> Result<Vec<NotificationRow>, StoreError> {
        rows_by_id(
            self,
            "SELECT * FROM notifications WHERE id = ANY($1)",
            ids,
            crate::postgres::notification_row,
        )
        .await
    }

    /// Bot orders by id, any user's (service path).
    pub async fn bot_orders_by_id(&self, ids: &[Uuid]) -> Result<Vec<BotOrderRow>, StoreError> {
        rows_by_id(
            self,
            "SELECT * FROM bot_orders WHERE id = ANY($1)",
            ids,
            crate::bots::postgres::order_row,
        )
        .await
    }
}

/// The rows `sql` (`… WHERE id = ANY($1)`) reads for `ids`, each through `read`.
async fn rows_by_id<T>(
    store: &Store,
    sql: &'static str,
    ids: &[Uuid],
    read: impl Fn(&sqlx::postgres::PgRow) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let pool = postgres_only(store)?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(sql).bind(ids).fetch_all(pool).await?;
    rows.iter().map(read).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn payloads_round_trip_in_order_and_stay_below_the_limit() {
        let refs: Vec<TriggerRef> = (0..500)
            .map(|n| TriggerRef {
                user: id(n % 7),
                trigger: id(1_000 + n),
                notification: (n % 3 == 0).then(|| id(5_000 + n)),
            })
            .collect();
        let payloads = EventNotice::Triggers(refs.clone()).payloads();
        assert!(payloads.len() > 1, "500 entries need several payloads");
        assert!(payloads.iter().all(|p| p.len() <= MAX_PAYLOAD));
        let back: Vec<TriggerRef> = payloads
            .iter()
            .flat_map(|p| match EventNotice::parse(p) {
                Some(EventNotice::Triggers(r)) => r,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(back, refs);
        let orders = EventNotice::BotOrders(vec![(id(1), id(2))]);
        assert_eq!(orders.payloads().len(), 1);
        assert_eq!(EventNotice::parse(&orders.payloads()[0]), Some(orders));
        assert!(EventNotice::Triggers(Vec::new()).payloads().is_empty());
    }

    proptest::proptest! {
        /// Any announcement comes back whole and in order from its payloads, each below the
        /// limit; and no payload, however malformed, panics the parser.
        #[test]
        fn any_notice_round_trips(
            entries in proptest::collection::vec(
                (proptest::prelude::any::<u128>(), proptest::prelude::any::<u128>(), proptest::option::of(proptest::prelude::any::<u128>())),
                0..400,
            ),
            orders in proptest::collection::vec((proptest::prelude::any::<u128>(), proptest::prelude::any::<u128>()), 0..200),
            junk in ".{0,200}",
        ) {
            let refs: Vec<TriggerRef> = entries
                .iter()
                .map(|(u, t, n)| TriggerRef { user: id(*u), trigger: id(*t), notification: n.map(id) })
                .collect();
            let pairs: Vec<(Uuid, Uuid)> = orders.iter().map(|(u, o)| (id(*u), id(*o))).collect();
            for notice in [EventNotice::Triggers(refs), EventNotice::BotOrders(pairs)] {
                let payloads = notice.payloads();
                proptest::prop_assert!(payloads.iter().all(|p| p.len() <= MAX_PAYLOAD));
                let mut back: Option<EventNotice> = None;
                for p in &payloads {
                    let parsed = EventNotice::parse(p);
                    proptest::prop_assert!(parsed.is_some(), "{p}");
                    back = match (back, parsed) {
                        (None, p) => p,
                        (Some(EventNotice::Triggers(mut a)), Some(EventNotice::Triggers(b))) => { a.extend(b); Some(EventNotice::Triggers(a)) }
                        (Some(EventNotice::BotOrders(mut a)), Some(EventNotice::BotOrders(b))) => { a.extend(b); Some(EventNotice::BotOrders(a)) }
                        (a, b) => { proptest::prop_assert!(false, "mixed kinds {a:?} {b:?}"); None }
                    };
                }
                let empty = match &notice {
                    EventNotice::Triggers(r) => r.is_empty(),
                    EventNotice::BotOrders(p) => p.is_empty(),
                };
                if empty {
                    proptest::prop_assert!(payloads.is_empty());
                } else {
                    proptest::prop_assert_eq!(back, Some(notice));
                }
            }
            let _ = EventNotice::parse(&junk);
        }
    }

    #[test]
    fn payloads_of_other_versions_are_not_read() {
        for bad in ["", "x 1,2", "t nonsense", "t a,b,c,d", "b 1", "t ,"] {
            assert_eq!(EventNotice::parse(bad), None, "{bad:?}");
        }
    }
}
