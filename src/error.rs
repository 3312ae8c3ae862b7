//! The application's error type: what went wrong (for the log) and which status page the
//! person gets (rendered in one place, `web::errors`).

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use crate::{
    accounts::{UserError, admin::AdminError},
    auth::{password::HashError, sign_in::SignInError},
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
            other @ SignInError::ChangedMeanwhile => AppError::Internal(other.into()),
        }
    }
}

impl From<UserError> for AppError {
    fn from(err: UserError) -> Self {
        AppError::from(AdminError::from(err))
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
        if status.is_server_error() && !matches!(self, AppError::Busy) {
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
