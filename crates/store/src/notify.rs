//! Immediate change notifications on PostgreSQL: the schema's triggers `pg_notify` on channel
//! `alert_runner_alerts` whenever an alert is created, changed or deleted; the runner listens so
//! it does not wait for its next poll.

use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use crate::{Store, StoreError};

/// The channel the schema's triggers notify on.
pub const ALERT_CHANNEL: &str = "alert_runner_alerts";

impl Store {
    /// A stream yielding `()` whenever an alert changed (PostgreSQL only; `None` on SQLite,
    /// where polling is all there is). It ends if the listening connection is lost; the caller
    /// falls back to polling and may listen again.
    pub async fn listen_alert_changes(&self) -> Result<Option<BoxStream<'static, ()>>, StoreError> {
        let Some(pool) = self.pg_pool() else {
            return Ok(None);
        };
        let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
        listener.listen(ALERT_CHANNEL).await?;
        Ok(Some(
            listener
                .into_stream()
                .take_while(|n| std::future::ready(n.is_ok()))
                .map(|_| ())
                .boxed(),
        ))
    }
}
