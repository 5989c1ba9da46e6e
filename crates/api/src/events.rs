//! Live events: `GET /v1/events` (Server-Sent Events) and `GET /v1/ws` (WebSocket) stream the
//! caller's triggers, notifications and bot events (each DCA bot order that fills, and each
//! deal it closes) as they are recorded, and only the caller's.
//!
//! ## Event ids
//!
//! Every event carries an id that says what the client has received, so that a client that
//! reconnects with it (SSE: `Last-Event-ID`, which browsers send by themselves; WebSocket:
//! `?last_event_id=` or the auth message's `last_event_id`) gets exactly what it missed, from
//! the store, and then the live events again — nothing twice, nothing lost.
//!
//! An id is `<µs>_<uuid>_<uuid>…`: a recording time `T` (microseconds since the epoch, at the
//! store's precision: SQLite keeps milliseconds) and the rows (trigger and notification ids)
//! recorded at `T` that the client has received. It means: every event recorded before `T`
//! was received; of those recorded at `T` or later, exactly the listed ones. A trigger and its
//! notification are recorded together, at the runner's `now` (the store's `created_at`, the
//! live event's `recorded_at` / `created_at`); all triggers the runner records in one batch
//! share that time, and batches are recorded one after another, each published right after
//! it commits. So when an event of a later time arrives, everything of the earlier times has
//! arrived, and the id moves on to the new time. The list is what makes ids exact even though
//! the events of one time arrive in the runner's order, which the store cannot reproduce.
//!
//! A reconnecting client is first subscribed, then served from the store every row recorded at
//! or after `T` but those listed (oldest first, each notification after its trigger), then the
//! live events; a live event already served (its row was committed before the store was read)
//! is skipped. The list holds at most [`MAX_LISTED`] rows: past that (a user with dozens of
//! alerts firing on one bar), the id stops advancing until the next time, and a client that
//! reconnects in between receives the events since again (never fewer).
//!
//! Bot orders are recorded by another writer than triggers (the dispatcher's bot handler, or
//! a "close deal now" request), each process recording and publishing them in time order, but
//! not in step with the runner's batches. So they are a second *lane* with a position of its
//! own: an id is `<alerts position>~<bots position>`, each as above (an id without `~` is
//! taken as both lanes at its position). A deal closed is sent right after the order that
//! closed it, and listed under the deal's id.
//!
//! A new connection starts with an id (SSE: an `id:` line without data; WebSocket: the
//! `ready` message) reaching [`START_LOOKBACK`] back, so a client that loses its connection
//! before any event misses nothing either.
//!
//! Where live events come from: on SQLite, one process records and streams, and its runner
//! and bot handler publish to its hub as they commit. On PostgreSQL, many processes may
//! record (a runner per shard, several dispatchers, several API instances), so the times of a
//! lane could commit out of order across writers. There each lane has a clock row that every
//! recording transaction moves just before it commits (never backwards), so a lane's times
//! increase in commit order; the transaction announces its rows with NOTIFY, which PostgreSQL
//! delivers in commit order; and every API process feeds its hub from those announcements
//! (`alert_dispatch::relay`), never from its own parts. So the reasoning above holds with any
//! number of writers, and a user's events reach every API instance wherever they were
//! recorded. If the relay loses its connection, every stream ends and its client catches up
//! from the store.
//!
//! ## Flow control
//!
//! A client that reads too slowly is dropped by the hub (see [`alert_dispatch::LiveHub`]): the
//! stream ends (SSE) or is closed with code 1013 (WebSocket); the client reconnects with its
//! last id and catches up from the store.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::time::Duration;

use alert_dispatch::{LiveEvent, Subscription};
use alert_store::{
    BackendKind, BotOrderRow, Cursor, NotificationRow, RecordedTrigger, Store, StoreError,
};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Query, Request, State};
use axum::http::{HeaderMap, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Router, body::Bytes};
use chrono::{DateTime, Utc};
use futures_util::{StreamExt, stream};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::AuthError;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::{ApiState, User};

/// SSE keep-alive comments, so proxies keep idle streams open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long a WebSocket without a token in its URL has to send its auth message.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// WebSocket pings; a client that answers nothing for [`PONG_TIMEOUT`] is disconnected.
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
pub const PONG_TIMEOUT: Duration = Duration::from_secs(45);
/// Most rows an id lists (see the module docs).
pub const MAX_LISTED: usize = 64;
/// How far back a new connection's first id reaches: a batch whose time was taken before the
/// client connected but that commits after is not missed on a resume.
pub const START_LOOKBACK: Duration = Duration::from_secs(30);
/// Rows per store read while catching up.
const REPLAY_PAGE: u32 = 500;
/// Rows sent whose live events may still arrive (the seam between store and live events).
const RECENT: usize = 4096;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/events", get(events))
        .route("/v1/ws", get(websocket))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(events, websocket),
    components(schemas(StreamEvent, EventData, WsReady, WsAuth, ErrorBody))
)]
pub struct Doc;

// ---- what clients receive -----------------------------------------------------------------

/// One event: a trigger, a notification, a bot order or a deal closed, with its id. SSE sends
/// it as `data:` (with `event: trigger|notification|bot_order|deal_closed` and `id:`); the
/// WebSocket as a text message.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct StreamEvent {
    /// Where the client is: reconnect with it (`Last-Event-ID`, `last_event_id`) to receive
    /// what was recorded since, and nothing twice. Opaque.
    pub id: String,
    #[serde(flatten)]
    pub event: EventData,
}

#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventData {
    /// An alert fired.
    Trigger {
        trigger_id: Uuid,
        alert_id: Uuid,
        symbol: String,
        bar_time: DateTime<Utc>,
        fired_at: DateTime<Utc>,
        /// When the trigger was recorded.
        recorded_at: DateTime<Utc>,
        /// Every condition's values, the bar and the rendered message when it fired.
        #[schema(value_type = Object)]
        snapshot: serde_json::Value,
    },
    /// A `notify` action's notification (sent after its trigger).
    Notification {
        notification_id: Uuid,
        trigger_id: Uuid,
        alert_id: Uuid,
        title: String,
        body: String,
        created_at: DateTime<Utc>,
    },
    /// A DCA bot's order filled (paper): `role` is `entry`, `so<n>`, `tp`, `sl` or `close`;
    /// `average_price` is the deal's after a buy, at its close after a sell; `realized_pnl`
    /// on the order that closed the deal.
    BotOrder {
        order_id: Uuid,
        bot_id: Uuid,
        deal_id: Uuid,
        deal_number: Option<i64>,
        client_order_id: String,
        role: String,
        side: String,
        price: f64,
        base_qty: f64,
        notional: f64,
        fee: f64,
        average_price: Option<f64>,
        realized_pnl: Option<f64>,
        /// When it was recorded.
        recorded_at: DateTime<Utc>,
    },
    /// A bot's deal closed (sent right after its closing order).
    DealClosed {
        deal_id: Uuid,
        bot_id: Uuid,
        deal_number: Option<i64>,
        /// `take_profit`, `stop_loss` or `closed_by_user`.
        exit: String,
        realized_pnl: Option<f64>,
        /// The order that closed it.
        order_id: Uuid,
        /// When that order was recorded.
        recorded_at: DateTime<Utc>,
    },
}

/// Which writer an event comes from (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lane {
    Alerts = 0,
    Bots = 1,
}

impl EventData {
    /// The SSE event name.
    pub fn kind(&self) -> &'static str {
        match self {
            EventData::Trigger { .. } => "trigger",
            EventData::Notification { .. } => "notification",
            EventData::BotOrder { .. } => "bot_order",
            EventData::DealClosed { .. } => "deal_closed",
        }
    }

    fn lane(&self) -> Lane {
        match self {
            EventData::Trigger { .. } | EventData::Notification { .. } => Lane::Alerts,
            EventData::BotOrder { .. } | EventData::DealClosed { .. } => Lane::Bots,
        }
    }

    /// The store row it is.
    fn row(&self) -> Uuid {
        match self {
            EventData::Trigger { trigger_id, .. } => *trigger_id,
            EventData::Notification {
                notification_id, ..
            } => *notification_id,
            EventData::BotOrder { order_id, .. } => *order_id,
            EventData::DealClosed { deal_id, .. } => *deal_id,
        }
    }

    /// When it was recorded.
    fn at(&self) -> DateTime<Utc> {
        match self {
            EventData::Trigger { recorded_at, .. }
            | EventData::BotOrder { recorded_at, .. }
            | EventData::DealClosed { recorded_at, .. } => *recorded_at,
            EventData::Notification { created_at, .. } => *created_at,
        }
    }

    /// Its place among the events of one time: each trigger, then its notification; each bot
    /// order, then the deal it closed.
    fn order(&self) -> (DateTime<Utc>, Uuid, u8) {
        match self {
            EventData::Trigger { trigger_id, .. } => (self.at(), *trigger_id, 0),
            EventData::Notification { trigger_id, .. } => (self.at(), *trigger_id, 1),
            EventData::BotOrder { order_id, .. } => (self.at(), *order_id, 0),
            EventData::DealClosed { order_id, .. } => (self.at(), *order_id, 1),
        }
    }

    /// A bot order's events: the order, and the deal it closed if it closed one.
    fn from_bot_order(order: BotOrderRow) -> impl Iterator<Item = Self> {
        let exit = alert_bots::Role::exit_of_key(&order.role);
        let closed = exit.map(|exit| EventData::DealClosed {
            deal_id: order.deal_id,
            bot_id: order.bot_id,
            deal_number: order.deal_number,
            exit: exit.to_owned(),
            realized_pnl: order.realized_pnl,
            order_id: order.id,
            recorded_at: order.created_at,
        });
        let order = EventData::BotOrder {
            order_id: order.id,
            bot_id: order.bot_id,
            deal_id: order.deal_id,
            deal_number: order.deal_number,
            client_order_id: order.client_order_id,
            role: order.role,
            side: order.side,
            price: order.price,
            base_qty: order.base_qty,
            notional: order.notional,
            fee: order.fee,
            average_price: order.average_price,
            realized_pnl: order.realized_pnl,
            recorded_at: order.created_at,
        };
        std::iter::once(order).chain(closed)
    }

    fn from_trigger(r: RecordedTrigger) -> Self {
        EventData::Trigger {
            trigger_id: r.trigger.id,
            alert_id: r.trigger.alert_id,
            symbol: r.trigger.symbol,
            bar_time: r.trigger.bar_time,
            fired_at: r.trigger.fired_at,
            recorded_at: r.recorded_at,
            snapshot: r.trigger.snapshot,
        }
    }

    fn from_notification(n: NotificationRow) -> Self {
        EventData::Notification {
            notification_id: n.id,
            trigger_id: n.trigger_id,
            alert_id: n.alert_id,
            title: n.title,
            body: n.body,
            created_at: n.created_at,
        }
    }

    /// A live event's events, their times as the store keeps them (so ids agree with the
    /// store's).
    fn from_live(e: &LiveEvent, kind: BackendKind) -> Vec<Self> {
        let one = match e {
            LiveEvent::Trigger {
                trigger_id,
                alert_id,
                symbol,
                bar_time,
                fired_at,
                recorded_at,
                snapshot,
            } => EventData::Trigger {
                trigger_id: *trigger_id,
                alert_id: *alert_id,
                symbol: symbol.clone(),
                bar_time: *bar_time,
                fired_at: *fired_at,
                recorded_at: stored_time(kind, *recorded_at),
                snapshot: snapshot.clone(),
            },
            LiveEvent::Notification {
                id,
                trigger_id,
                alert_id,
                title,
                body,
                created_at,
            } => EventData::Notification {
                notification_id: *id,
                trigger_id: *trigger_id,
                alert_id: *alert_id,
                title: title.clone(),
                body: body.clone(),
                created_at: stored_time(kind, *created_at),
            },
            LiveEvent::BotOrder(order) => {
                let mut order = order.clone();
                order.created_at = stored_time(kind, order.created_at);
                return Self::from_bot_order(order).collect();
            }
        };
        vec![one]
    }
}

/// `t` as the store keeps it: milliseconds on SQLite, microseconds on PostgreSQL (both
/// truncate).
fn stored_time(kind: BackendKind, t: DateTime<Utc>) -> DateTime<Utc> {
    let truncated = match kind {
        BackendKind::Sqlite => DateTime::from_timestamp_millis(t.timestamp_millis()),
        BackendKind::Postgres => DateTime::from_timestamp_micros(t.timestamp_micros()),
    };
    truncated.unwrap_or(t)
}

// ---- ids ----------------------------------------------------------------------------------

/// A position in one lane of a user's events (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    /// Everything recorded before it was received.
    pub since: DateTime<Utc>,
    /// Of what was recorded at `since` or later, the rows received.
    pub seen: Vec<Uuid>,
}

impl Position {
    fn at(since: DateTime<Utc>) -> Self {
        Self {
            since,
            seen: Vec::new(),
        }
    }

    fn encode(&self) -> String {
        let mut s = self.since.timestamp_micros().to_string();
        for id in &self.seen {
            s.push('_');
            s.push_str(&id.to_string());
        }
        s
    }

    fn parse(s: &str) -> Option<Self> {
        let mut parts = s.trim().split('_');
        let since = DateTime::from_timestamp_micros(parts.next()?.parse().ok()?)?;
        let seen = parts
            .map(|p| Uuid::parse_str(p).ok())
            .collect::<Option<Vec<_>>>()?;
        (seen.len() <= MAX_LISTED).then_some(Self { since, seen })
    }
}

/// A position in a user's events: one per lane (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventId {
    /// Triggers and notifications.
    pub alerts: Position,
    /// Bot orders and deals closed.
    pub bots: Position,
}

impl EventId {
    pub fn encode(&self) -> String {
        format!("{}~{}", self.alerts.encode(), self.bots.encode())
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().split_once('~') {
            Some((alerts, bots)) => Some(Self {
                alerts: Position::parse(alerts)?,
                bots: Position::parse(bots)?,
            }),
            // An id of a version without bot events: both lanes from its time.
            None => {
                let alerts = Position::parse(s)?;
                Some(Self {
                    bots: Position::at(alerts.since),
                    alerts,
                })
            }
        }
    }
}

// ---- the feed: store, then live -----------------------------------------------------------

/// What a feed yields.
#[derive(Debug)]
enum Next {
    Event(StreamEvent),
    /// The hub dropped the subscription: the client fell behind.
    Lagged,
    /// The store failed while catching up.
    Failed(StoreError),
}

/// One connection's events: the store's rows since the client's id, then the live events.
struct Feed {
    store: Store,
    user: Uuid,
    kind: BackendKind,
    sub: Subscription,
    /// Where the next store reads start while catching up: triggers and notifications, then
    /// bot orders.
    replay_alerts: Option<(Cursor, Cursor)>,
    replay_bots: Option<Cursor>,
    pending: VecDeque<EventData>,
    /// The position in each lane: see [`EventId`].
    lanes: [Position; 2],
    id: String,
    /// Rows already sent (and the client's listed ones): their live events are skipped.
    recent: HashSet<Uuid>,
    recent_order: VecDeque<Uuid>,
}

/// Rows recorded at `since` or later.
fn cursor_from(since: DateTime<Utc>) -> Cursor {
    Cursor {
        at: since - chrono::Duration::microseconds(1),
        id: Uuid::max(),
    }
}

impl Feed {
    /// Subscribes `user` (before reading the store, so nothing falls between the two), and
    /// reads the first rows to send when resuming from `from`.
    async fn start(state: &ApiState, user: Uuid, from: Option<EventId>) -> ApiResult<Self> {
        let sub = state.live.subscribe(user);
        let kind = state.store.kind();
        let resume = from.is_some();
        let position = from.unwrap_or_else(|| {
            let since = stored_time(
                kind,
                Utc::now() - chrono::Duration::from_std(START_LOOKBACK).unwrap_or_default(),
            );
            EventId {
                alerts: Position::at(since),
                bots: Position::at(since),
            }
        });
        let alerts_from = cursor_from(position.alerts.since);
        let bots_from = cursor_from(position.bots.since);
        let mut feed = Self {
            store: state.store.clone(),
            user,
            kind,
            sub,
            replay_alerts: resume.then_some((alerts_from, alerts_from)),
            replay_bots: resume.then_some(bots_from),
            pending: VecDeque::new(),
            id: position.encode(),
            lanes: [
                Position::at(position.alerts.since),
                Position::at(position.bots.since),
            ],
            recent: HashSet::new(),
            recent_order: VecDeque::new(),
        };
        for (lane, listed) in [
            (Lane::Alerts, position.alerts.seen),
            (Lane::Bots, position.bots.seen),
        ] {
            for row in listed {
                feed.remember(row);
                feed.lanes[lane as usize].seen.push(row);
            }
        }
        feed.fill().await?;
        Ok(feed)
    }

    /// The client's position: reconnecting with it resumes after what was sent.
    fn id(&self) -> &str {
        &self.id
    }

    fn remember(&mut self, row: Uuid) {
        if self.recent.insert(row) {
            self.recent_order.push_back(row);
            if self.recent_order.len() > RECENT
                && let Some(old) = self.recent_order.pop_front()
            {
                self.recent.remove(&old);
            }
        }
    }

    /// Reads the next rows to catch up with: triggers and notifications first, then bot
    /// orders. Cancel-safe: nothing changes until a read is done.
    async fn fill(&mut self) -> Result<(), StoreError> {
        if self.replay_alerts.is_some() {
            self.fill_alerts().await
        } else {
            self.fill_bots().await
        }
    }

    /// Every row of both alert tables up to the smaller end of the two pages, so the merge
    /// misses nothing.
    async fn fill_alerts(&mut self) -> Result<(), StoreError> {
        let Some((after_trigger, after_note)) = self.replay_alerts else {
            return Ok(());
        };
        let (triggers, notes) = tokio::try_join!(
            self.store
                .triggers_since(self.user, after_trigger, REPLAY_PAGE),
            self.store
                .notifications_since(self.user, after_note, REPLAY_PAGE),
        )?;
        let full = |n: usize| n >= REPLAY_PAGE as usize;
        let key_t = |t: &RecordedTrigger| (t.recorded_at, t.trigger.id);
        let key_n = |n: &NotificationRow| (n.created_at, n.id);
        let bound = [
            triggers.last().filter(|_| full(triggers.len())).map(key_t),
            notes.last().filter(|_| full(notes.len())).map(key_n),
        ]
        .into_iter()
        .flatten()
        .min();
        let triggers: Vec<_> = triggers
            .into_iter()
            .filter(|t| bound.is_none_or(|b| key_t(t) <= b))
            .collect();
        let notes: Vec<_> = notes
            .into_iter()
            .filter(|n| bound.is_none_or(|b| key_n(n) <= b))
            .collect();
        // Without a full page, this was everything committed: what commits later is published
        // to the subscription.
        self.replay_alerts = bound.map(|_| {
            (
                triggers.last().map_or(after_trigger, |t| Cursor {
                    at: t.recorded_at,
                    id: t.trigger.id,
                }),
                notes.last().map_or(after_note, |n| Cursor {
                    at: n.created_at,
                    id: n.id,
                }),
            )
        });
        let mut rows: Vec<EventData> = triggers
            .into_iter()
            .map(EventData::from_trigger)
            .chain(notes.into_iter().map(EventData::from_notification))
            .collect();
        rows.sort_by_key(EventData::order);
        self.pending.extend(rows);
        Ok(())
    }

    async fn fill_bots(&mut self) -> Result<(), StoreError> {
        let Some(after) = self.replay_bots else {
            return Ok(());
        };
        let orders = self
            .store
            .bot_orders_since(self.user, after, REPLAY_PAGE)
            .await?;
        self.replay_bots = orders
            .last()
            .filter(|_| orders.len() >= REPLAY_PAGE as usize)
            .map(|o| Cursor {
                at: o.created_at,
                id: o.id,
            });
        self.pending
            .extend(orders.into_iter().flat_map(EventData::from_bot_order));
        Ok(())
    }

    /// Records that `event` is sent and moves its lane's position; `None` if it was sent
    /// already.
    fn admit(&mut self, event: EventData) -> Option<StreamEvent> {
        let row = event.row();
        if self.recent.contains(&row) {
            return None;
        }
        self.remember(row);
        let at = event.at();
        let lane = &mut self.lanes[event.lane() as usize];
        if at > lane.since {
            lane.since = at;
            lane.seen.clear();
            lane.seen.push(row);
        } else if at == lane.since && lane.seen.len() < MAX_LISTED {
            lane.seen.push(row);
        } else {
            // Past the list's bound (a resume sends it again), or recorded before the
            // position (a writer's clock stepped back): sent, but the id stays.
            return Some(StreamEvent {
                id: self.id.clone(),
                event,
            });
        }
        let [alerts, bots] = &self.lanes;
        self.id = EventId {
            alerts: alerts.clone(),
            bots: bots.clone(),
        }
        .encode();
        Some(StreamEvent {
            id: self.id.clone(),
            event,
        })
    }

    /// The next event. Cancel-safe (for `select!`).
    async fn next(&mut self) -> Next {
        loop {
            if let Some(event) = self.pending.pop_front() {
                if let Some(out) = self.admit(event) {
                    return Next::Event(out);
                }
                continue;
            }
            if self.replay_alerts.is_some() || self.replay_bots.is_some() {
                if let Err(e) = self.fill().await {
                    return Next::Failed(e);
                }
                continue;
            }
            let Some(live) = self.sub.recv().await else {
                return Next::Lagged;
            };
            self.pending.extend(EventData::from_live(&live, self.kind));
        }
    }
}

// ---- SSE ----------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// Resume after this event id (SSE clients send `Last-Event-ID` instead; it wins).
    pub last_event_id: Option<String>,
    /// The token, for clients that cannot set headers (browsers' `EventSource`, WebSocket).
    pub access_token: Option<String>,
}

fn params(uri: &Uri) -> ApiResult<StreamParams> {
    Query::<StreamParams>::try_from_uri(uri)
        .map(|Query(p)| p)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

fn parse_id(raw: Option<&str>, path: &str) -> ApiResult<Option<EventId>> {
    raw.filter(|s| !s.trim().is_empty())
        .map(|s| {
            EventId::parse(s).ok_or_else(|| {
                ApiError::field(path, "not an event id of this API: reconnect without it")
            })
        })
        .transpose()
}

/// The caller's triggers and notifications as Server-Sent Events.
///
/// Each event has `event: trigger`, `notification`, `bot_order` or `deal_closed`, an `id:` and `data:` (a
/// `StreamEvent` as JSON). The first line is an `id:` alone (the connection's position);
/// keep-alive comments every 15 s. Reconnecting with `Last-Event-ID` replays, from the store,
/// exactly what was recorded since that event, then continues live. The stream ends if the
/// client falls behind; it reconnects and catches up.
#[utoipa::path(get, path = "/v1/events", tag = "events",
    params(StreamParams, ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id")),
    responses(
        (status = 200, content_type = "text/event-stream", body = StreamEvent, description = "An endless stream of events"),
        (status = 400, body = ErrorBody, description = "An unknown Last-Event-ID"),
        (status = 401, body = ErrorBody),
        (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn events(
    User(user): User,
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
) -> ApiResult<Response> {
    let query = params(&uri)?;
    let header_id = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::field("Last-Event-ID", "not text"))
        })
        .transpose()?;
    let from = match header_id.filter(|s| !s.trim().is_empty()) {
        Some(id) => parse_id(Some(id), "Last-Event-ID")?,
        None => parse_id(query.last_event_id.as_deref(), "last_event_id")?,
    };
    let feed = Feed::start(&state, user, from).await?;
    let first = Event::default().id(feed.id());
    let rest = stream::unfold(Some(feed), |feed| async move {
        let mut feed = feed?;
        match feed.next().await {
            Next::Event(e) => Some((sse_event(&e), Some(feed))),
            Next::Lagged => Some((
                Event::default().comment("fell behind: reconnect with Last-Event-ID"),
                None,
            )),
            Next::Failed(e) => {
                tracing::warn!(error = %e, "live events: reading the store failed");
                Some((
                    Event::default().comment("unavailable: reconnect with Last-Event-ID"),
                    None,
                ))
            }
        }
    });
    let stream = stream::once(async move { first })
        .chain(rest)
        .map(Ok::<_, Infallible>);
    Ok((
        // Tell buffering proxies (nginx) to pass events on at once.
        [(header::HeaderName::from_static("x-accel-buffering"), "no")],
        Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)),
    )
        .into_response())
}

fn sse_event(e: &StreamEvent) -> Event {
    let event = Event::default().event(e.event.kind()).id(&e.id);
    match serde_json::to_string(e) {
        Ok(json) => event.data(json),
        // Unreachable for these types; never send an event without its data.
        Err(err) => {
            tracing::error!(error = %err, "live event did not serialise");
            Event::default().comment("an event could not be encoded")
        }
    }
}

// ---- WebSocket ----------------------------------------------------------------------------

/// The first message of a WebSocket whose URL has no token.
#[derive(Debug, Deserialize, ToSchema)]
pub struct WsAuth {
    /// `auth`.
    #[serde(rename = "type")]
    pub kind: String,
    pub token: String,
    /// Resume after this event id.
    #[serde(default)]
    pub last_event_id: Option<String>,
}

/// Sent once the socket is authenticated and subscribed, before any event: `{"type":
/// "ready", "id": …}`, the connection's position.
#[derive(Debug, Serialize, ToSchema)]
pub struct WsReady {
    /// `ready`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
}

/// Close codes.
const CLOSE_UNAUTHORIZED: u16 = 4401;
const CLOSE_AUTH_TIMEOUT: u16 = 4408;
const CLOSE_RATE_LIMITED: u16 = 4429;
const CLOSE_BAD_ID: u16 = 4400;
const CLOSE_LAGGED: u16 = 1013;
const CLOSE_ERROR: u16 = 1011;
const CLOSE_GOING_AWAY: u16 = 1001;

/// The caller's triggers and notifications over a WebSocket.
///
/// Authenticate with `?access_token=` (or `Authorization: Bearer`), or send
/// `{"type":"auth","token":"…"}` (optionally with `"last_event_id"`) as the first message
/// within 10 s. The server then sends `{"type":"ready","id":…}` and each event as a JSON text
/// message (a `StreamEvent`: `{"id","type",…}`). Reconnect with `?last_event_id=` (or in the
/// auth message) to receive what was recorded since. The server pings every 15 s; a client
/// may also send `{"type":"ping"}` and receives `{"type":"pong"}`. Close codes: 4401 bad
/// token, 4408 no auth message in time, 4429 rate limited, 4400 unknown event id, 1013 the
/// client fell behind (reconnect with the last id), 1011 a server error.
#[utoipa::path(get, path = "/v1/ws", tag = "events",
    params(StreamParams),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol", body = StreamEvent),
        (status = 400, body = ErrorBody, description = "An unknown last_event_id"),
        (status = 401, body = ErrorBody, description = "A bad token (or none, on a plain request)"),
        (status = 429, body = ErrorBody)),
    security(("bearer" = []), ()))]
pub async fn websocket(State(state): State<ApiState>, request: Request) -> Response {
    match upgrade(state, request).await {
        Ok(r) | Err(r) => r,
    }
}

async fn upgrade(state: ApiState, request: Request) -> Result<Response, Response> {
    let (mut parts, _body) = request.into_parts();
    let query = params(&parts.uri).map_err(IntoResponse::into_response)?;
    let has_token =
        parts.headers.contains_key(header::AUTHORIZATION) || query.access_token.is_some();
    let user = if has_token {
        let User(user) = User::from_request_parts(&mut parts, &state)
            .await
            .map_err(IntoResponse::into_response)?;
        Some(user)
    } else {
        None
    };
    let from = parse_id(query.last_event_id.as_deref(), "last_event_id")
        .map_err(IntoResponse::into_response)?;
    let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(ws) => ws,
        // A plain request without a token is refused for the token first.
        Err(_) if user.is_none() => {
            return Err(ApiError::from(AuthError::Missing).into_response());
        }
        Err(rejection) => return Err(rejection.into_response()),
    };
    Ok(ws.on_upgrade(move |socket| serve_socket(socket, state, user, from)))
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// Waits for the auth message: the user and the id to resume from, or the close message.
async fn authenticate(
    socket: &mut WebSocket,
    state: &ApiState,
) -> Result<(Uuid, Option<EventId>), Option<Message>> {
    let deadline = tokio::time::Instant::now() + AUTH_TIMEOUT;
    loop {
        let message = match tokio::time::timeout_at(deadline, socket.recv()).await {
            Err(_) => {
                return Err(Some(close(
                    CLOSE_AUTH_TIMEOUT,
                    r#"authentication timeout: send {"type":"auth","token":"<jwt>"} first"#,
                )));
            }
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return Err(None),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(m))) => m,
        };
        let auth = match &message {
            Message::Text(text) => serde_json::from_str::<WsAuth>(text.as_str())
                .ok()
                .filter(|a| a.kind == "auth"),
            _ => None,
        };
        let Some(auth) = auth else {
            return Err(Some(close(
                CLOSE_UNAUTHORIZED,
                r#"expected {"type":"auth","token":"<jwt>"} first"#,
            )));
        };
        let user = state
            .auth
            .verify(auth.token.trim())
            .map_err(|e| Some(close(CLOSE_UNAUTHORIZED, &e.to_string())))?;
        state
            .rate
            .check(user)
            .map_err(|_| Some(close(CLOSE_RATE_LIMITED, "too many requests: slow down")))?;
        let from = parse_id(auth.last_event_id.as_deref(), "last_event_id")
            .map_err(|e| Some(close(CLOSE_BAD_ID, &e.message)))?;
        return Ok((user, from));
    }
}

async fn serve_socket(
    mut socket: WebSocket,
    state: ApiState,
    user: Option<Uuid>,
    from: Option<EventId>,
) {
    let (user, from) = match user {
        Some(user) => (user, from),
        None => match authenticate(&mut socket, &state).await {
            Ok((user, own)) => (user, own.or(from)),
            Err(message) => {
                if let Some(m) = message {
                    let _ = socket.send(m).await;
                }
                return;
            }
        },
    };
    let mut feed = match Feed::start(&state, user, from).await {
        Ok(feed) => feed,
        Err(e) => {
            let _ = socket.send(close(CLOSE_ERROR, &e.message)).await;
            return;
        }
    };
    let ready = WsReady {
        kind: "ready",
        id: feed.id().to_owned(),
    };
    if send_json(&mut socket, &ready).await.is_err() {
        return;
    }
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
    let mut heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            next = feed.next() => match next {
                Next::Event(e) => {
                    if send_json(&mut socket, &e).await.is_err() {
                        return;
                    }
                }
                Next::Lagged => {
                    let _ = socket
                        .send(close(CLOSE_LAGGED, "fell behind: reconnect with last_event_id"))
                        .await;
                    return;
                }
                Next::Failed(e) => {
                    tracing::warn!(error = %e, "live events: reading the store failed");
                    let _ = socket
                        .send(close(CLOSE_ERROR, "unavailable: reconnect with last_event_id"))
                        .await;
                    return;
                }
            },
            message = socket.recv() => match message {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(m)) => {
                    heard = tokio::time::Instant::now();
                    if let Message::Text(text) = m
                        && is_ping(text.as_str())
                        && socket
                            .send(Message::Text(r#"{"type":"pong"}"#.into()))
                            .await
                            .is_err()
                    {
                        return;
                    }
                }
            },
            _ = ping.tick() => {
                if heard.elapsed() > PONG_TIMEOUT {
                    let _ = socket.send(close(CLOSE_GOING_AWAY, "no pong")).await;
                    return;
                }
                if socket.send(Message::Ping(Bytes::new())).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn is_ping(text: &str) -> bool {
    #[derive(Deserialize)]
    struct Kind {
        #[serde(rename = "type")]
        kind: String,
    }
    serde_json::from_str::<Kind>(text).is_ok_and(|k| k.kind == "ping")
}

async fn send_json(socket: &mut WebSocket, value: &impl Serialize) -> Result<(), ()> {
    let text = serde_json::to_string(value).map_err(|_| ())?;
    socket
        .send(Message::Text(text.into()))
        .await
        .map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(us: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(us).unwrap()
    }

    #[test]
    fn ids_round_trip_and_refuse_garbage() {
        let id = EventId {
            alerts: Position {
                since: t(1_767_225_600_123_000),
                seen: vec![Uuid::from_u128(1), Uuid::from_u128(2)],
            },
            bots: Position {
                since: t(1_767_225_599_000_000),
                seen: vec![Uuid::from_u128(7)],
            },
        };
        let s = id.encode();
        assert_eq!(
            s,
            format!(
                "1767225600123000_{}_{}~1767225599000000_{}",
                Uuid::from_u128(1),
                Uuid::from_u128(2),
                Uuid::from_u128(7)
            )
        );
        assert_eq!(EventId::parse(&s), Some(id));
        // An id from before bot events: both lanes at its time.
        assert_eq!(
            EventId::parse("1767225600123000"),
            Some(EventId {
                alerts: Position::at(t(1_767_225_600_123_000)),
                bots: Position::at(t(1_767_225_600_123_000)),
            })
        );
        for bad in [
            "",
            "x",
            "12_notauuid",
            "1_",
            "_1",
            "1~",
            "~1",
            "1~x",
            "1~2~3",
        ] {
            assert_eq!(EventId::parse(bad), None, "{bad:?}");
        }
        let too_many = format!(
            "1{}",
            format!("_{}", Uuid::from_u128(3)).repeat(MAX_LISTED + 1)
        );
        assert_eq!(EventId::parse(&too_many), None);
    }

    #[test]
    fn live_times_are_cut_to_the_store_precision() {
        let at = t(1_767_225_600_123_456) + chrono::Duration::nanoseconds(789);
        assert_eq!(
            stored_time(BackendKind::Sqlite, at),
            t(1_767_225_600_123_000)
        );
        assert_eq!(
            stored_time(BackendKind::Postgres, at),
            t(1_767_225_600_123_456)
        );
    }

    #[test]
    fn events_of_one_time_order_each_trigger_before_its_notification() {
        let at = t(5);
        let note = |trigger: u128, id: u128| EventData::Notification {
            notification_id: Uuid::from_u128(id),
            trigger_id: Uuid::from_u128(trigger),
            alert_id: Uuid::nil(),
            title: String::new(),
            body: String::new(),
            created_at: at,
        };
        let trig = |id: u128| EventData::Trigger {
            trigger_id: Uuid::from_u128(id),
            alert_id: Uuid::nil(),
            symbol: String::new(),
            bar_time: at,
            fired_at: at,
            recorded_at: at,
            snapshot: serde_json::Value::Null,
        };
        let mut v = [note(2, 1), trig(9), note(9, 3), trig(2)];
        v.sort_by_key(EventData::order);
        assert_eq!(
            v.iter().map(EventData::row).collect::<Vec<_>>(),
            [2, 1, 9, 3].map(Uuid::from_u128)
        );
    }
}
