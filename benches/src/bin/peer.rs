//! The peer: what a Rust developer would usually reach for — axum-login over
//! tower-sessions' PostgreSQL store — in the documented default setup.
//!
//! Follows axum-login's `sqlite` example adapted to PostgreSQL: `PostgresStore::new` +
//! `migrate()`, the expired-session deletion task, `Expiry::OnInactivity(1 day)`, a
//! backend whose `authenticate` looks the user up and verifies with `password_auth` in
//! `spawn_blocking`, `login_required!` with a login URL. Permissions come from the user's
//! role in memory (no extra query), which favours the peer on the 403 path.

use std::{collections::HashSet, net::SocketAddr};

use async_trait::async_trait;
use axum::{
    Form, Router,
    http::{StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
    routing::get,
};
use axum_login::{
    AuthManagerLayerBuilder, AuthUser, AuthnBackend, AuthzBackend, UserId, login_required,
    permission_required,
};
use clap::Parser;
use password_auth::verify_password;
use portcullis_bench::{display_time, page};
use serde::Deserialize;
use sqlx::{FromRow, PgPool};
use time::Duration;
use tokio::task;
use tower_sessions::{Expiry, Session, SessionManagerLayer};
use tower_sessions_sqlx_store::PostgresStore;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    bind: SocketAddr,
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
}

#[derive(Clone, FromRow)]
struct User {
    id: i64,
    username: String,
    password: String,
    role: String,
}

// The password hash stays out of logs, as in axum-login's example.
impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("role", &self.role)
            .field("password", &"[redacted]")
            .finish()
    }
}

impl AuthUser for User {
    type Id = i64;

    fn id(&self) -> Self::Id {
        self.id
    }

    fn session_auth_hash(&self) -> &[u8] {
        // Changing the password invalidates existing sessions.
        self.password.as_bytes()
    }
}

#[derive(Debug, Clone, Deserialize)]
struct Credentials {
    username: String,
    password: String,
    next: Option<String>,
}

#[derive(Debug, Clone)]
struct Backend {
    db: PgPool,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    #[error(transparent)]
    TaskJoin(#[from] task::JoinError),
}

#[async_trait]
impl AuthnBackend for Backend {
    type User = User;
    type Credentials = Credentials;
    type Error = Error;

    async fn authenticate(&self, creds: Credentials) -> Result<Option<User>, Error> {
        let user: Option<User> = sqlx::query_as("SELECT * FROM users WHERE username = $1")
            .bind(creds.username)
            .fetch_optional(&self.db)
            .await?;
        // Verifying is blocking and slow, so it runs in `spawn_blocking` (the example's way).
        task::spawn_blocking(|| {
            Ok(user.filter(|user| verify_password(creds.password, &user.password).is_ok()))
        })
        .await?
    }

    async fn get_user(&self, user_id: &UserId<Self>) -> Result<Option<User>, Error> {
        let user = sqlx::query_as("SELECT * FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&self.db)
            .await?;
        Ok(user)
    }
}

#[async_trait]
impl AuthzBackend for Backend {
    type Permission = String;

    async fn get_user_permissions(&self, user: &User) -> Result<HashSet<String>, Error> {
        Ok(match user.role.as_str() {
            "editor" | "admin" => HashSet::from(["reports".to_owned()]),
            _ => HashSet::new(),
        })
    }
}

type AuthSession = axum_login::AuthSession<Backend>;

fn html(body: String) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Html(body)).into_response()
}

async fn account(auth_session: AuthSession, session: Session) -> Response {
    let Some(user) = auth_session.user else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let expires = display_time(session.expiry_date());
    let viewer = page::Viewer {
        username: &user.username,
        role: &user.role,
        csrf: "peer-has-no-csrf-token-kept-for-the-size-xy",
    };
    html(page::account(
        &viewer,
        &page::Account {
            signed_in_at: &expires,
            idle_expires_at: &expires,
            absolute_expires_at: &expires,
            previous_sign_in: None,
            // axum-login's session store cannot list a user's sessions (no user column).
            sessions: &[],
            min_password: 15,
            second_factor: false,
            recovery_used: None,
            recovery_left: 0,
            requests: &[],
        },
    ))
}

/// `GET /api/me`: who is signed in, as JSON (axum-login knows the user and the session's
/// expiry; it keeps no sign-in time).
async fn me(auth_session: AuthSession, session: Session) -> Response {
    let Some(user) = auth_session.user else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    #[derive(serde::Serialize)]
    struct Me<'a> {
        username: &'a str,
        role: &'a str,
        #[serde(with = "time::serde::rfc3339")]
        expires_at: time::OffsetDateTime,
    }
    axum::Json(Me {
        username: &user.username,
        role: &user.role,
        expires_at: session.expiry_date(),
    })
    .into_response()
}

async fn login_form() -> Html<&'static str> {
    Html(
        "<!doctype html><title>Sign in</title><form method=post action=/login>\
         <input name=username><input name=password type=password><button>Sign in</button></form>",
    )
}

async fn login(mut auth_session: AuthSession, Form(creds): Form<Credentials>) -> Response {
    let next = creds.next.clone();
    let user = match auth_session.authenticate(creds).await {
        Ok(Some(user)) => user,
        Ok(None) => return Redirect::to("/login").into_response(),
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    if auth_session.login(&user).await.is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    match next {
        Some(next) if !next.is_empty() => Redirect::to(&next).into_response(),
        _ => Redirect::to("/").into_response(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Default pool options, as in the example (this includes sqlx's ping before every
    // acquire).
    let db = PgPool::connect(&args.database_url).await?;

    let session_store = PostgresStore::new(db.clone());
    session_store.migrate().await?;
    let _deletion_task = task::spawn(
        tower_sessions::ExpiredDeletion::continuously_delete_expired(
            session_store.clone(),
            tokio::time::Duration::from_secs(60),
        ),
    );
    let session_layer = SessionManagerLayer::new(session_store)
        .with_secure(false)
        .with_expiry(Expiry::OnInactivity(Duration::days(1)));
    let backend = Backend { db };
    let auth_layer = AuthManagerLayerBuilder::new(backend, session_layer).build();

    let app = Router::new()
        .route("/reports", get(account))
        .route_layer(permission_required!(Backend, "reports"))
        .route("/account", get(account))
        .route("/api/me", get(me))
        .route_layer(login_required!(Backend, login_url = "/login"))
        .route("/login", get(login_form).post(login))
        .route("/healthz", get(|| async { "ok" }))
        .layer(auth_layer);

    let listener = tokio::net::TcpListener::bind(args.bind).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
