//! The application's error type: what went wrong (for the log) and which status page the
//! person gets (rendered in one place, `web::errors`).

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use crate::{
    accounts::{UserError, admin::AdminError},
    auth::{passkey::PasskeyError, password::HashError, sign_in::SignInError},
};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The database cannot be reached (down, restarting, pool exhausted): 503, retry later.
    #[error("database unavailable")]
    DatabaseUnavailable(#[source] sqlx::Error),
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// tower-sessions' store failed; in practice the database.
    #[error("session store failed")]
    SessionStore(#[from] tower_sessions::session::Error),
    /// Every password-hashing worker is busy and the queue is full.
    #[error("password hashing is saturated")]
    Busy,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for AppError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => AppError::DatabaseUnavailable(err),
            sqlx::Error::Database(db)
                // 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now.
                if db.code().is_some_and(|code| code.starts_with("57P") || code.starts_with("08")) =>
            {
                AppError::DatabaseUnavailable(err)
            }
            _ => AppError::Database(err),
        }
    }
}

impl From<HashError> for AppError {
    fn from(err: HashError) -> Self {
        match err {
            HashError::Busy => AppError::Busy,
            other => AppError::Internal(other.into()),
        }
    }
}

/// A domain error that reached a handler unanswered: the user-facing cases (bad names,
/// refusals) are answered by the pages themselves, so what is left is a failure.
impl From<AdminError> for AppError {
    fn from(err: AdminError) -> Self {
        match err {
            AdminError::Database(err) => AppError::from(err),
            AdminError::Hash(err) => AppError::from(err),
            AdminError::User(err) => AppError::from(err),
            other => AppError::Internal(other.into()),
        }
    }
}

impl From<SignInError> for AppError {
    fn from(err: SignInError) -> Self {
        match err {
            SignInError::Database(err) => err.into(),
            SignInError::Hash(err) => err.into(),
            SignInError::Session(err) => err.into(),
            SignInError::Passkey(err) => err.into(),
            other @ SignInError::ChangedMeanwhile => AppError::Internal(other.into()),
        }
    }
}

impl From<PasskeyError> for AppError {
    fn from(err: PasskeyError) -> Self {
        match err {
            PasskeyError::Database(err) => err.into(),
            PasskeyError::Session(err) => err.into(),
            other => AppError::Internal(other.into()),
        }
    }
}

impl From<UserError> for AppError {
    fn from(err: UserError) -> Self {
        match err {
            UserError::Database(err) => AppError::from(err),
            UserError::Hash(err) => AppError::from(err),
            other => AppError::Internal(other.into()),
        }
    }
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::DatabaseUnavailable(_) | AppError::SessionStore(_) | AppError::Busy => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            AppError::Database(_) | AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Full cause chain, for the log only.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let Some(what_to_do) = crate::db::pgbouncer_switch_missing(&self) {
            // The driver's "prepared statement sqlx_s_1 already exists" names neither the
            // cause nor the fix; the operator reading this line needs both.
            tracing::error!("request failed: {what_to_do}");
        } else if status.is_server_error() && !matches!(self, AppError::Busy) {
            tracing::error!(error = %chain(&self), "request failed");
        } else {
            tracing::warn!(error = %chain(&self), "request refused");
        }
        // The body is left empty: `web::errors::error_pages` renders the page (HTML or
        // JSON) for the status, so users never see internals.
        let mut response = status.into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use std::{
        borrow::Cow,
        io::Write,
        sync::{Arc, Mutex},
    };

    use sqlx::error::{DatabaseError, ErrorKind};

    use super::*;

    /// What PostgreSQL says when PgBouncer hands a connection to a client whose driver
    /// prepared a statement of the same name on it.
    #[derive(Debug)]
    struct Clash;

    impl std::fmt::Display for Clash {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.message())
        }
    }

    impl std::error::Error for Clash {}

    impl DatabaseError for Clash {
        fn message(&self) -> &str {
            "prepared statement \"sqlx_s_1\" already exists"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some("42P05".into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> ErrorKind {
            ErrorKind::Other
        }
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A request failing on PgBouncer's statement clash logs what to do about it (the
    /// switch to add), not only the driver's words.
    #[test]
    fn a_pgbouncer_statement_clash_logs_the_switch_to_add() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let error = AppError::from(sqlx::Error::Database(Box::new(Clash)));
        let response = tracing::subscriber::with_default(subscriber, || error.into_response());
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let log = String::from_utf8_lossy(&captured.0.lock().expect("log")).into_owned();
        assert!(
            log.contains("add --db-pgbouncer") && log.contains("sqlx_s_1"),
            "{log}"
        );
    }
}
