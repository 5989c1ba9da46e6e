//! The outbox workers: claim due deliveries, send them, record every attempt.
//!
//! Crash safety comes from the store: a claimed delivery carries a lease; a worker that dies
//! leaves it to expire and another worker (or this one after a restart) claims it again, so
//! every delivery is sent at least once and its `webhook-id` lets the receiver drop repeats.
//! Completion is fenced by the lease: a worker that lost its lease records nothing.
//!
//! Concurrency: at most `max_in_flight` attempts per process, `per_host` per receiver host and
//! `per_user` per user (over all of the user's hosts). A claimed delivery whose host or user
//! is busy waits in memory for a slot ("parked"), up to [`PARK_PER_SLOT`] times the host's and
//! the user's limit; beyond that it is put back in the outbox for `defer` without counting an
//! attempt, so neither one slow receiver nor one user with many slow host names takes the
//! slots other receivers and users need. Claims shrink to what the last one could place while
//! some host is saturated, so a busy receiver costs few writes (putting every claimed delivery
//! back, claim after claim, made a single busy receiver's deliveries cycle through the
//! outbox ten times each at scale).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use alert_store::{AttemptOutcome, AttemptRecord, Delivery, DeliveryKind, Store};
use chrono::Utc;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::bots::{BotAction, BotError, BotHandler};
use crate::metrics_names as m;
use crate::retry::RetryPolicy;
use crate::sign::{Secret, generate_secret};
use crate::ssrf::AddressPolicy;
use crate::webhook::{Attempt, ClientError, RESPONSE_KEEP, Verdict, WebhookSender, message_id};

/// Dispatcher settings.
#[derive(Clone, Debug)]
pub struct DispatchConfig {
    /// This worker's lease owner name (unique per process).
    pub worker: String,
    /// How often the outbox is polled when nothing wakes the dispatcher.
    pub poll: Duration,
    /// Deliveries claimed per query.
    pub batch: u32,
    /// How long a claimed delivery is this worker's; must exceed `timeout` comfortably.
    pub lease: Duration,
    /// Attempts in flight in this process.
    pub max_in_flight: usize,
    /// Attempts in flight per receiver host (`host:port`).
    pub per_host: usize,
    /// Attempts in flight per user, whatever the hosts (host names are free to make).
    pub per_user: usize,
    /// Per-attempt timeout (connect + send + response).
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub policy: AddressPolicy,
    /// How long a delivery whose host is busy waits before it is claimed again.
    pub defer: Duration,
    /// On shutdown, how long in-flight attempts may take to finish; the rest are abandoned to
    /// their leases (and retried later).
    pub shutdown_grace: Duration,
    /// How long a user's signing secrets are cached.
    pub secret_cache: Duration,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            worker: worker_name(),
            poll: Duration::from_millis(500),
            batch: 128,
            lease: Duration::from_secs(60),
            max_in_flight: 256,
            per_host: 16,
            per_user: 32,
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            policy: AddressPolicy::default(),
            defer: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(15),
            secret_cache: Duration::from_secs(10),
        }
    }
}

/// `host-pid-random`: unique per process, readable in the outbox.
pub fn worker_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "dispatch".to_owned());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// Wakes a dispatcher at once (after triggers were recorded) instead of at its next poll.
#[derive(Clone, Debug, Default)]
pub struct Waker(Arc<Notify>);

impl Waker {
    pub fn wake(&self) {
        self.0.notify_one();
    }

    /// Waits for a wake-up (the dispatcher's side; also for tests of what wakes it).
    pub async fn notified(&self) {
        self.0.notified().await;
    }
}

/// What a dispatcher did with deliveries whose host or user was busy (also exported as the
/// [`m::PARKED`] and [`m::DEFERRED`] counters; this is per dispatcher, for tests and logs).
#[derive(Debug, Default)]
pub struct DispatchCounters {
    /// Waited in memory for a slot.
    pub parked: std::sync::atomic::AtomicU64,
    /// Put back in the outbox.
    pub deferred: std::sync::atomic::AtomicU64,
}

/// Each user's signing secrets, with the time they were read.
type SecretCache = HashMap<Uuid, (Instant, Arc<Vec<Secret>>)>;

struct Context {
    store: Store,
    config: DispatchConfig,
    sender: WebhookSender,
    bots: Option<Arc<dyn BotHandler>>,
    secrets: Mutex<SecretCache>,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
    users: Mutex<HashMap<Uuid, Arc<Semaphore>>>,
    parked: Mutex<Parked>,
    counters: Arc<DispatchCounters>,
}

/// The dispatcher. [`Dispatcher::run`] drives it until cancelled.
pub struct Dispatcher {
    ctx: Arc<Context>,
    waker: Waker,
}

impl Dispatcher {
    /// A dispatcher of webhooks, and of bot actions when `bots` is given (without a handler,
    /// bot actions stay in the outbox for a process that has one).
    pub fn new(
        store: Store,
        config: DispatchConfig,
        bots: Option<Arc<dyn BotHandler>>,
    ) -> Result<Self, DispatchError> {
        let sender = WebhookSender::new(config.policy.clone(), config.timeout)?;
        Ok(Self {
            ctx: Arc::new(Context {
                store,
                config,
                sender,
                bots,
                secrets: Mutex::default(),
                hosts: Mutex::default(),
                users: Mutex::default(),
                parked: Mutex::default(),
                counters: Arc::default(),
            }),
            waker: Waker::default(),
        })
    }

    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    pub fn counters(&self) -> Arc<DispatchCounters> {
        Arc::clone(&self.ctx.counters)
    }

    /// Forgets a user's cached signing secrets (after a rotation in this process).
    pub fn forget_secrets(&self, user: Uuid) {
        lock(&self.ctx.secrets).remove(&user);
    }

    /// Runs until `cancel`; then stops claiming, lets in-flight attempts finish within the
    /// shutdown grace, and returns.
    pub async fn run(self, cancel: CancellationToken) {
        let ctx = self.ctx;
        let kinds: &[DeliveryKind] = if ctx.bots.is_some() {
            &[DeliveryKind::Webhook, DeliveryKind::Bot]
        } else {
            &[DeliveryKind::Webhook]
        };
        let max_in_flight = ctx.config.max_in_flight.max(1);
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut backlog = tokio::time::interval(Duration::from_secs(5));
        let mut store_backoff = Duration::from_millis(100);
        tracing::info!(worker = %ctx.config.worker, ?kinds, "dispatcher started");
        // Shrinks to what the last claim could place while a host or user is saturated (see
        // the module doc), and doubles back while claims place everything.
        let batch = (ctx.config.batch as usize).max(1);
        let mut claim = batch;
        'outer: loop {
            while tasks.try_join_next().is_some() {}
            // Parked deliveries wait for their host or user, not for a slot of this process:
            // they must not keep other hosts' deliveries from being claimed.
            let running = tasks.len().saturating_sub(lock(&ctx.parked).total);
            let free = max_in_flight.saturating_sub(running);
            let mut more_due = false;
            let mut saturated = false;
            if free > 0 {
                let want = claim.min(free).max(1);
                match ctx
                    .store
                    .claim_deliveries(
                        &ctx.config.worker,
                        kinds,
                        want as u32,
                        ctx.config.lease,
                        Utc::now(),
                    )
                    .await
                {
                    Ok(claimed) => {
                        store_backoff = Duration::from_millis(100);
                        let got = claimed.len();
                        let mut placed = 0;
                        for delivery in claimed {
                            if start(&ctx, delivery, &mut tasks) != Placement::Deferred {
                                placed += 1;
                            }
                        }
                        saturated = placed < got;
                        claim = if saturated {
                            (placed + 1).min(batch)
                        } else {
                            (claim * 2).min(batch)
                        };
                        // Claiming again at once would only put more back.
                        more_due = got == want && !saturated;
                        metrics::gauge!(m::IN_FLIGHT).set(tasks.len() as f64);
                    }
                    Err(e) => {
                        metrics::counter!(m::ERRORS).increment(1);
                        tracing::warn!(error = %e, "dispatcher: claiming deliveries failed");
                        tokio::select! {
                            _ = cancel.cancelled() => break 'outer,
                            _ = tokio::time::sleep(store_backoff) => {}
                        }
                        store_backoff = (store_backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
            }
            if more_due && tasks.len().saturating_sub(lock(&ctx.parked).total) < max_in_flight {
                continue;
            }
            // Saturated: look again soon (parked deliveries start as slots free up, and the
            // claim after that fills the parking again), rather than at the next poll.
            let poll = tokio::time::sleep(if saturated {
                ctx.config.poll.min(ctx.config.defer / 4)
            } else {
                ctx.config.poll
            });
            tokio::pin!(poll);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break 'outer,
                    _ = self.waker.notified() => break,
                    _ = &mut poll => break,
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => {
                        metrics::gauge!(m::IN_FLIGHT).set(tasks.len() as f64);
                        if more_due { break }
                    }
                    _ = backlog.tick() => refresh_backlog(&ctx.store).await,
                }
            }
        }
        let left = tasks.len();
        if left > 0 {
            tracing::info!(
                in_flight = left,
                "dispatcher stopping: letting in-flight attempts finish"
            );
            let drained = tokio::time::timeout(ctx.config.shutdown_grace, async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
            if drained.is_err() {
                tracing::warn!(
                    abandoned = tasks.len(),
                    "dispatcher: attempts still running after the shutdown grace were abandoned; their leases expire and they are retried"
                );
                tasks.abort_all();
            }
        }
        metrics::gauge!(m::IN_FLIGHT).set(0.0);
        tracing::info!("dispatcher stopped");
    }
}

/// How many deliveries may wait in memory for a host's (or user's) slot, per slot of its limit.
pub const PARK_PER_SLOT: usize = 4;

/// Where a claimed delivery went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placement {
    /// Started (or, for a bot action or a disabled webhook, handled) at once.
    Started,
    /// Waiting in memory for its host's or user's slot.
    Parked,
    /// Put back in the outbox for `defer`.
    Deferred,
}

/// Deliveries waiting in memory, per host and per user.
#[derive(Default)]
struct Parked {
    hosts: HashMap<String, usize>,
    users: HashMap<Uuid, usize>,
    /// All of them: they do not count against `max_in_flight`, and are at most as many.
    total: usize,
}

/// A parked delivery's place; given back when dropped.
struct ParkSlot {
    ctx: Arc<Context>,
    host: String,
    user: Uuid,
}

impl Drop for ParkSlot {
    fn drop(&mut self) {
        let mut parked = lock(&self.ctx.parked);
        release_count(&mut parked.hosts, &self.host);
        release_count(&mut parked.users, &self.user);
        parked.total = parked.total.saturating_sub(1);
    }
}

fn release_count<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = counts.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            counts.remove(key);
        }
    }
}

/// A place to wait in memory for `host` and `user`, if neither has its parking full.
fn park(ctx: &Arc<Context>, host: &str, user: Uuid) -> Option<ParkSlot> {
    let mut parked = lock(&ctx.parked);
    let host_full =
        parked.hosts.get(host).copied().unwrap_or(0) >= ctx.config.per_host.max(1) * PARK_PER_SLOT;
    let user_full =
        parked.users.get(&user).copied().unwrap_or(0) >= ctx.config.per_user.max(1) * PARK_PER_SLOT;
    if host_full || user_full || parked.total >= ctx.config.max_in_flight.max(1) {
        return None;
    }
    parked.total += 1;
    *parked.hosts.entry(host.to_owned()).or_insert(0) += 1;
    *parked.users.entry(user).or_insert(0) += 1;
    Some(ParkSlot {
        ctx: Arc::clone(ctx),
        host: host.to_owned(),
        user,
    })
}

/// Waits for both a user and a host permit, never holding one while waiting for the other
/// (a parked delivery holding its user's permit would starve the user's other hosts).
async fn both_permits(
    user: Arc<Semaphore>,
    host: Arc<Semaphore>,
) -> (OwnedSemaphorePermit, OwnedSemaphorePermit) {
    loop {
        if let Ok(h) = Arc::clone(&host).acquire_owned().await
            && let Ok(u) = Arc::clone(&user).try_acquire_owned()
        {
            return (u, h);
        }
        if let Ok(u) = Arc::clone(&user).acquire_owned().await
            && let Ok(h) = Arc::clone(&host).try_acquire_owned()
        {
            return (u, h);
        }
        // Both busy in turn: let the holders move before trying again.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn refresh_backlog(store: &Store) {
    match store.delivery_counts().await {
        Ok(c) => metrics::gauge!(m::BACKLOG).set(c.pending as f64),
        Err(e) => tracing::debug!(error = %e, "dispatcher: delivery counts"),
    }
}

/// `host:port` of a URL: the unit of per-host concurrency.
fn host_key(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!(
            "{}:{}",
            u.host_str().unwrap_or(""),
            u.port_or_known_default().unwrap_or(0)
        ),
        Err(_) => String::new(),
    }
}

fn host_semaphore(ctx: &Context, host: &str) -> Arc<Semaphore> {
    keyed_semaphore(&ctx.hosts, host.to_owned(), ctx.config.per_host)
}

fn user_semaphore(ctx: &Context, user: Uuid) -> Arc<Semaphore> {
    keyed_semaphore(&ctx.users, user, ctx.config.per_user)
}

/// `key`'s semaphore of `limit` permits.
fn keyed_semaphore<K: std::hash::Hash + Eq>(
    map: &Mutex<HashMap<K, Arc<Semaphore>>>,
    key: K,
    limit: usize,
) -> Arc<Semaphore> {
    let limit = limit.max(1);
    let mut map = lock(map);
    if map.len() > 10_000 {
        // Forget idle keys so the map stays bounded (a semaphore someone waits on or holds
        // is not idle).
        map.retain(|_, s| s.available_permits() < limit);
    }
    Arc::clone(
        map.entry(key)
            .or_insert_with(|| Arc::new(Semaphore::new(limit))),
    )
}

fn start(ctx: &Arc<Context>, delivery: Delivery, tasks: &mut JoinSet<()>) -> Placement {
    let ctx = Arc::clone(ctx);
    match delivery.kind {
        DeliveryKind::Webhook if !delivery.disabled => {
            let host = host_key(&delivery.url);
            let (users, hosts) = (
                user_semaphore(&ctx, delivery.user_id),
                host_semaphore(&ctx, &host),
            );
            if let Ok(user) = Arc::clone(&users).try_acquire_owned()
                && let Ok(host) = Arc::clone(&hosts).try_acquire_owned()
            {
                tasks.spawn(async move {
                    send_webhook(&ctx, delivery).await;
                    drop((user, host));
                });
                return Placement::Started;
            }
            if let Some(slot) = park(&ctx, &host, delivery.user_id) {
                metrics::counter!(m::PARKED).increment(1);
                ctx.counters.parked.fetch_add(1, Ordering::Relaxed);
                // Its lease must outlive the wait and the attempt.
                let wait = ctx
                    .config
                    .lease
                    .saturating_sub(ctx.config.timeout)
                    .checked_div(2)
                    .unwrap_or_default();
                tasks.spawn(async move {
                    let permits = tokio::time::timeout(wait, both_permits(users, hosts)).await;
                    drop(slot);
                    match permits {
                        Ok(permits) => {
                            send_webhook(&ctx, delivery).await;
                            drop(permits);
                        }
                        Err(_) => defer(&ctx, delivery.id).await,
                    }
                });
                return Placement::Parked;
            }
            tasks.spawn(async move { defer(&ctx, delivery.id).await });
            Placement::Deferred
        }
        DeliveryKind::Webhook => {
            tasks.spawn(async move { cancel_disabled(&ctx, delivery).await });
            Placement::Started
        }
        DeliveryKind::Bot => {
            tasks.spawn(async move { run_bot(&ctx, delivery).await });
            Placement::Started
        }
    }
}

/// Puts a delivery back in the outbox for `defer`, without counting an attempt.
async fn defer(ctx: &Context, id: Uuid) {
    metrics::counter!(m::DEFERRED).increment(1);
    ctx.counters.deferred.fetch_add(1, Ordering::Relaxed);
    let until = Utc::now() + chrono_duration(ctx.config.defer);
    if let Err(e) = ctx
        .store
        .defer_delivery(id, &ctx.config.worker, until, Utc::now())
        .await
    {
        metrics::counter!(m::ERRORS).increment(1);
        tracing::warn!(delivery = %id, error = %e, "dispatcher: deferring failed; the lease will expire");
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or_else(|_| chrono::Duration::days(1))
}

/// A user's signing secrets (cached), or the attempt to record when they cannot be had: a
/// retry while the store is unreachable, a failure for a secret that does not parse.
async fn user_secrets(ctx: &Context, user: Uuid) -> Result<Arc<Vec<Secret>>, Attempt> {
    if let Some((at, secrets)) = lock(&ctx.secrets).get(&user)
        && at.elapsed() < ctx.config.secret_cache
    {
        return Ok(Arc::clone(secrets));
    }
    let stored = ctx
        .store
        .webhook_secret(user, &generate_secret(), Utc::now())
        .await
        .map_err(|e| {
            Attempt::not_sent(Verdict::Retry, format!("reading the signing secret: {e}"))
        })?;
    let current = Secret::parse(&stored.current)
        .map_err(|e| Attempt::not_sent(Verdict::Fail, e.to_string()))?;
    let mut secrets = vec![current];
    if let Some(previous) = stored.previous.as_deref()
        && let Ok(s) = Secret::parse(previous)
    {
        secrets.push(s);
    }
    let secrets = Arc::new(secrets);
    lock(&ctx.secrets).insert(user, (Instant::now(), Arc::clone(&secrets)));
    Ok(secrets)
}

async fn send_webhook(ctx: &Context, d: Delivery) {
    let secrets = match d.secret.as_deref() {
        Some(own) => Secret::parse(own)
            .map(|s| Arc::new(vec![s]))
            .map_err(|e| Attempt::not_sent(Verdict::Fail, format!("the action's {e}"))),
        None => user_secrets(ctx, d.user_id).await,
    };
    let attempt = match secrets {
        Ok(secrets) => {
            let msg_id = message_id(d.trigger_id, d.action_index);
            ctx.sender
                .send(
                    &d.url,
                    &msg_id,
                    Utc::now().timestamp(),
                    &secrets,
                    &d.payload,
                )
                .await
        }
        Err(not_sent) => not_sent,
    };
    metrics::histogram!(m::ATTEMPT_SECONDS).record(attempt.duration.as_secs_f64());
    if attempt.verdict == Verdict::Gone {
        let reason = "the receiver answered 410 Gone: this webhook action is disabled until the alert is replaced";
        if let Err(e) = ctx
            .store
            .disable_webhook(d.alert_id, d.action_index, reason, Utc::now())
            .await
        {
            metrics::counter!(m::ERRORS).increment(1);
            tracing::warn!(alert = %d.alert_id, error = %e, "dispatcher: disabling a webhook failed");
        }
        tracing::info!(alert = %d.alert_id, action = d.action_index, "webhook disabled: 410 Gone");
    }
    let outcome = outcome(ctx, &d, attempt.verdict, attempt.retry_after);
    let record = AttemptRecord {
        status_code: attempt.status.map(i32::from),
        error: attempt.error,
        duration_ms: i32::try_from(attempt.duration.as_millis()).unwrap_or(i32::MAX),
        outcome,
        response: attempt.response.map(|r| truncate(r, RESPONSE_KEEP)),
    };
    complete(ctx, &d, record, attempt_label(attempt.verdict)).await;
}

fn attempt_label(v: Verdict) -> &'static str {
    match v {
        Verdict::Delivered => "delivered",
        Verdict::Retry => "retry",
        Verdict::Gone => "gone",
        Verdict::Fail => "failed",
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

fn outcome(
    ctx: &Context,
    d: &Delivery,
    verdict: Verdict,
    retry_after: Option<Duration>,
) -> AttemptOutcome {
    match verdict {
        Verdict::Delivered => AttemptOutcome::Delivered,
        Verdict::Gone => AttemptOutcome::Cancelled,
        Verdict::Fail => AttemptOutcome::Failed,
        Verdict::Retry => {
            let made = usize::try_from(d.attempts).unwrap_or(0) + 1;
            match ctx
                .config
                .retry
                .next_delay(made, retry_after, &mut rand::rng())
            {
                Some(delay) => AttemptOutcome::Retry {
                    at: Utc::now() + chrono_duration(delay),
                },
                None => AttemptOutcome::Failed,
            }
        }
    }
}

async fn complete(ctx: &Context, d: &Delivery, record: AttemptRecord, result: &'static str) {
    let kind = d.kind.as_str();
    let status = match record.outcome {
        AttemptOutcome::Delivered => Some("delivered"),
        AttemptOutcome::Failed => Some("failed"),
        AttemptOutcome::Cancelled => Some("cancelled"),
        AttemptOutcome::Retry { .. } => None,
    };
    let error = record.error.clone();
    match ctx
        .store
        .complete_delivery(d.id, &ctx.config.worker, &record, Utc::now())
        .await
    {
        Ok(true) => {
            metrics::counter!(m::ATTEMPTS, "kind" => kind, "result" => result).increment(1);
            if let Some(status) = status {
                metrics::counter!(m::DELIVERIES, "kind" => kind, "status" => status).increment(1);
            }
            match status {
                Some("failed") => {
                    tracing::warn!(delivery = %d.id, alert = %d.alert_id, attempts = d.attempts + 1, error = error.as_deref().unwrap_or(""), "delivery failed for good")
                }
                Some(_) => tracing::debug!(delivery = %d.id, ?status, "delivery finished"),
                None => {
                    tracing::debug!(delivery = %d.id, error = error.as_deref().unwrap_or(""), "delivery attempt failed; retrying")
                }
            }
        }
        Ok(false) => {
            tracing::warn!(delivery = %d.id, "dispatcher: lease lost before the attempt was recorded; another worker owns it")
        }
        Err(e) => {
            metrics::counter!(m::ERRORS).increment(1);
            tracing::warn!(delivery = %d.id, error = %e, "dispatcher: recording an attempt failed; the lease will expire and the delivery is retried");
        }
    }
}

async fn cancel_disabled(ctx: &Context, d: Delivery) {
    let record = AttemptRecord {
        status_code: None,
        error: Some("not sent: this webhook action was disabled (410 Gone)".to_owned()),
        duration_ms: 0,
        outcome: AttemptOutcome::Cancelled,
        response: None,
    };
    complete(ctx, &d, record, "disabled").await;
}

async fn run_bot(ctx: &Context, d: Delivery) {
    let Some(bots) = ctx.bots.as_ref() else {
        return;
    };
    let started = Instant::now();
    let payload = serde_json::from_str(&d.payload).unwrap_or(serde_json::Value::Null);
    let result = bots
        .handle(BotAction {
            trigger_id: d.trigger_id,
            alert_id: d.alert_id,
            user_id: d.user_id,
            bot_id: d.url.clone(),
            payload,
        })
        .await;
    let (verdict, error) = match result {
        Ok(()) => (Verdict::Delivered, None),
        Err(BotError::Retry(e)) => (Verdict::Retry, Some(e)),
        Err(BotError::Permanent(e)) => (Verdict::Fail, Some(e)),
    };
    let record = AttemptRecord {
        status_code: None,
        error,
        duration_ms: i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX),
        outcome: outcome(ctx, &d, verdict, None),
        response: None,
    };
    complete(ctx, &d, record, attempt_label(verdict)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_keyed_with_their_port() {
        assert_eq!(host_key("https://example.com/x"), "example.com:443");
        assert_eq!(host_key("http://example.com/x"), "example.com:80");
        assert_eq!(host_key("http://127.0.0.1:9000/x"), "127.0.0.1:9000");
        assert_eq!(host_key("not a url"), "");
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("héllo".to_owned(), 2), "h");
        assert_eq!(truncate("abc".to_owned(), 10), "abc");
    }
}
