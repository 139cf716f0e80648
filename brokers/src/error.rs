/// Errors from stores and dispatchers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The server cannot be reached (connection refused, pool timed out, connection lost).
    /// Callers answer 503 and try again later.
    #[error("job store unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// Any other database error.
    #[error("job store error: {0}")]
    Database(#[source] sqlx::Error),
    /// Applying migrations failed.
    #[error("job store migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The configuration cannot be used.
    #[error("invalid store configuration: {0}")]
    Config(String),
    /// The message broker failed or cannot be reached.
    #[error("broker error: {0}")]
    Broker(String),
    /// The event stream (Kafka) failed or cannot be reached.
    #[error("event stream error: {0}")]
    Stream(String),
    /// A row holds a value the code cannot read (a bug or a hand-edited row).
    #[error("corrupt job row: {0}")]
    Corrupt(String),
    /// The profile store (DynamoDB) cannot be reached or timed out. Callers answer 503 and try
    /// again later.
    #[error("profile store unavailable: {0}")]
    ProfilesUnavailable(String),
    /// The profile store refused a request.
    #[error("profile store error: {0}")]
    Profiles(String),
    /// The group-commit batch a request was part of failed with this error.
    #[error("{0}")]
    Shared(std::sync::Arc<StoreError>),
}

impl StoreError {
    /// Whether the error means "try again later" rather than "this request is wrong".
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Unavailable(_) | StoreError::ProfilesUnavailable(_) => true,
            StoreError::Shared(inner) => inner.is_unavailable(),
            _ => false,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_) => StoreError::Unavailable(err),
            sqlx::Error::Database(ref db)
                if db
                    .code()
                    .is_some_and(|c| c.starts_with("08") || c == "57P01" || c == "57P03") =>
            {
                // 08xxx connection exceptions, admin shutdown, cannot connect now.
                StoreError::Unavailable(err)
            }
            other => StoreError::Database(other),
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
