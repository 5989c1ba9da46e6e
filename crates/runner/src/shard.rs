//! Shard ownership (`--shard I/N`): a runner runs only while its process holds the shard's
//! PostgreSQL advisory lock.
//!
//! [`run_as_owner`] opens a dedicated connection and tries the lock
//! ([`alert_store::shard_lock_key`]) every [`OwnershipConfig::poll`]; while another process
//! holds it, this one is a **hot standby** (logged once, [`SHARD_OWNER`] = 0). Once it has the
//! lock it starts a runner term (the caller's closure: load the shard's alerts and the last
//! fired bars from the store, start the market source, run) and checks every `poll` that the
//! lock is still held. The owner's death closes its connection, which frees the lock: a
//! standby takes it at its next try. If this process's lock connection fails (PostgreSQL
//! restarted, the network) or the lock is gone, the running term is stopped (it drains and
//! records what it evaluated) and the process goes back to standby — it never runs without
//! the lock. A term that ends by itself (a replay at its end) or on shutdown releases the lock
//! and ends [`run_as_owner`].
//!
//! During a hand-over two runners may briefly overlap (the old owner's term drains while the
//! new one starts, or a partitioned owner has not noticed yet): harmless, since the store
//! records a trigger at most once per (alert, bar).

use std::future::Future;
use std::time::{Duration, Instant};

use alert_core::Shard;
use alert_store::{AdvisoryLock, Store, StoreError, shard_lock_key};
use tokio_util::sync::CancellationToken;

use crate::metrics_names::SHARD_OWNER;

/// How ownership is taken and kept.
#[derive(Clone, Copy, Debug)]
pub struct OwnershipConfig {
    /// How often a standby tries the lock, and an owner checks it still holds it.
    pub poll: Duration,
    /// A check of the lock that takes longer than this counts as losing it.
    pub check_timeout: Duration,
}

impl Default for OwnershipConfig {
    fn default() -> Self {
        Self {
            poll: Duration::from_secs(1),
            check_timeout: Duration::from_secs(5),
        }
    }
}

/// How a term ended.
enum Term<T> {
    /// By itself or on shutdown: its result.
    Ended(T),
    /// The lock was lost: the term was stopped; its result.
    Lost(T),
}

/// Runs `term` each time this process owns `shard`, until shutdown (`cancel`) or until a term
/// ends by itself while owning. `term` gets a token that is cancelled on shutdown and when
/// the lock is lost; it must stop promptly then. Returns the last term's result (`None` when
/// shutdown came while standing by). Errors only on a configuration error (not PostgreSQL);
/// a lost connection is retried.
pub async fn run_as_owner<T, E, F, Fut>(
    store: &Store,
    shard: Shard,
    config: OwnershipConfig,
    cancel: CancellationToken,
    mut term: F,
) -> Result<Option<T>, E>
where
    E: From<StoreError> + std::fmt::Display,
    F: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let key = shard_lock_key(shard.index, shard.count);
    let label = shard.to_string();
    let owner_gauge = metrics::gauge!(SHARD_OWNER, "shard" => label.clone());
    owner_gauge.set(0.0);
    loop {
        let Some(mut lock) = acquire(store, shard, key, config, &cancel).await? else {
            return Ok(None);
        };
        owner_gauge.set(1.0);
        tracing::info!(shard = %label, lock_key = key, "shard owned: starting the runner");
        let term_cancel = cancel.child_token();
        let outcome = {
            let running = term(term_cancel.clone());
            tokio::pin!(running);
            let mut check = tokio::time::interval(config.poll);
            check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            check.tick().await; // the first tick is immediate
            loop {
                tokio::select! {
                    result = &mut running => break Term::Ended(result),
                    _ = check.tick() => {
                        let held = tokio::time::timeout(config.check_timeout, lock.still_held()).await;
                        let lost = match held {
                            Ok(Ok(true)) => None,
                            Ok(Ok(false)) => Some("the lock is no longer held".to_owned()),
                            Ok(Err(e)) => Some(format!("the lock's connection failed: {e}")),
                            Err(_) => Some(format!("no answer from PostgreSQL within {:?}", config.check_timeout)),
                        };
                        if let Some(why) = lost {
                            tracing::error!(shard = %label, reason = %why, "shard lock lost: stopping the runner, back to standby");
                            owner_gauge.set(0.0);
                            term_cancel.cancel();
                            break Term::Lost(running.await);
                        }
                    }
                }
            }
        };
        owner_gauge.set(0.0);
        match outcome {
            Term::Ended(result) => {
                lock.release().await;
                tracing::info!(shard = %label, "shard released");
                return result.map(Some);
            }
            Term::Lost(result) => {
                drop(lock);
                if let Err(e) = &result {
                    tracing::warn!(shard = %label, error = %e, "the stopped runner ended with an error");
                }
                if cancel.is_cancelled() {
                    return result.map(Some);
                }
            }
        }
    }
}

/// Stands by until the lock is ours (`Some`) or shutdown (`None`). Connection failures are
/// logged and retried every `poll`.
async fn acquire<E: From<StoreError>>(
    store: &Store,
    shard: Shard,
    key: i64,
    config: OwnershipConfig,
    cancel: &CancellationToken,
) -> Result<Option<AdvisoryLock>, E> {
    let mut lock: Option<AdvisoryLock> = None;
    let mut standby_since: Option<Instant> = None;
    let mut last_error: Option<String> = None;
    loop {
        if cancel.is_cancelled() {
            if let Some(lock) = lock {
                lock.release().await;
            }
            return Ok(None);
        }
        let attempt = async {
            let l = match lock.as_mut() {
                Some(l) => l,
                None => lock.insert(store.advisory_lock(key).await?),
            };
            l.try_acquire().await
        };
        let outcome = tokio::select! {
            r = tokio::time::timeout(config.check_timeout, attempt) => r,
            () = cancel.cancelled() => continue,
        };
        match outcome {
            Ok(Ok(true)) => {
                if let Some(since) = standby_since {
                    tracing::info!(%shard, lock_key = key, standby_ms = since.elapsed().as_millis() as u64, "the shard's owner is gone: taking over");
                }
                return Ok(lock);
            }
            Ok(Ok(false)) => {
                if standby_since.is_none() {
                    tracing::info!(%shard, lock_key = key, poll_ms = config.poll.as_millis() as u64,
                        "another process owns this shard: hot standby, waiting for its lock");
                    standby_since = Some(Instant::now());
                }
                last_error = None;
            }
            Ok(Err(StoreError::Config(e))) => return Err(StoreError::Config(e).into()),
            Ok(Err(e)) => {
                lock = None;
                let e = e.to_string();
                if last_error.as_deref() != Some(&e) {
                    tracing::warn!(%shard, error = %e, "cannot try the shard lock; retrying");
                }
                last_error = Some(e);
            }
            Err(_) => {
                lock = None;
                tracing::warn!(%shard, "no answer from PostgreSQL trying the shard lock; retrying");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(config.poll) => {}
            () = cancel.cancelled() => {}
        }
    }
}
