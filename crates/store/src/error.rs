/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database configuration: {0}")]
    Config(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A limit on active alerts would be exceeded; nothing was written.
    #[error("limit reached: {0}")]
    Limit(String),
    /// The change conflicts with the resource's state (a bot with an open deal); nothing was
    /// written.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The resource changed since the caller read it (optimistic concurrency); nothing was
    /// written: read it again and retry.
    #[error("changed meanwhile: {0}")]
    Stale(String),
    /// A stored value could not be read back.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}
