//! The ceiling: what a database-backed authenticated page costs at minimum.
//!
//! A bare axum app that serves Portcullis' `/account` page after exactly one PostgreSQL
//! query keyed by a cookie value (token joined to user), with no sessions library, no
//! hashing, no middleware. Anything Portcullis does beyond this shows up as the gap
//! between the two.

use std::net::SocketAddr;

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode, Uri, header},
    response::{Html, IntoResponse, Redirect, Response},
    routing::get,
};
use clap::Parser;
use portcullis_bench::{CEILING_COOKIE, display_time, page};
use sqlx::{PgPool, postgres::PgPoolOptions};
use time::OffsetDateTime;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    bind: SocketAddr,
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
}

#[derive(sqlx::FromRow)]
struct Row {
    username: String,
    role: String,
    created_at: OffsetDateTime,
    expires_at: OffsetDateTime,
    now: OffsetDateTime,
}

fn token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == CEILING_COOKIE).then_some(value)
        })
}

fn to_login(uri: &Uri) -> Response {
    let next = uri.path();
    Redirect::to(&format!("/login?next={next}&notice=required")).into_response()
}

/// The one query: the signed-in user behind the cookie, or the login redirect.
async fn signed_in(pool: &PgPool, headers: &HeaderMap, uri: &Uri) -> Result<Row, Response> {
    let Some(token) = token(headers) else {
        return Err(to_login(uri));
    };
    let row = sqlx::query_as::<_, Row>(
        "SELECT u.username, u.role, t.created_at, t.expires_at, now() AS now \
         FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.token = $1",
    )
    .bind(token)
    .fetch_optional(pool)
    .await
    .map_err(|_| StatusCode::SERVICE_UNAVAILABLE.into_response())?;
    match row {
        Some(row) if row.now < row.expires_at => Ok(row),
        _ => Err(to_login(uri)),
    }
}

fn html(status: StatusCode, body: String) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Html(body)).into_response()
}

fn account_page(row: &Row) -> String {
    let viewer = page::Viewer {
        username: &row.username,
        role: &row.role,
        csrf: "ceiling-has-no-csrf-token-but-keeps-the-bytes",
    };
    page::account(
        &viewer,
        &page::Account {
            signed_in_at: &display_time(row.created_at),
            idle_expires_at: &display_time(row.expires_at),
            absolute_expires_at: &display_time(row.expires_at),
            previous_sign_in: None,
        },
    )
}

async fn account(State(pool): State<PgPool>, headers: HeaderMap, uri: Uri) -> Response {
    match signed_in(&pool, &headers, &uri).await {
        Ok(row) => html(StatusCode::OK, account_page(&row)),
        Err(response) => response,
    }
}

async fn reports(State(pool): State<PgPool>, headers: HeaderMap, uri: Uri) -> Response {
    let row = match signed_in(&pool, &headers, &uri).await {
        Ok(row) => row,
        Err(response) => return response,
    };
    if row.role == "member" {
        let viewer = page::Viewer {
            username: &row.username,
            role: &row.role,
            csrf: "ceiling-has-no-csrf-token-but-keeps-the-bytes",
        };
        return html(
            StatusCode::FORBIDDEN,
            page::forbidden(&viewer, "editor", uri.path()),
        );
    }
    html(StatusCode::OK, account_page(&row))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The same pool settings as Portcullis (no ping before each acquire), so the ceiling
    // is the minimum for the same driver, not a different driver configuration.
    let pool = PgPoolOptions::new()
        .max_connections(10)
        .test_before_acquire(false)
        .connect(&args.database_url)
        .await?;
    let app = Router::new()
        .route("/account", get(account))
        .route("/reports", get(reports))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(pool);
    let listener = tokio::net::TcpListener::bind(args.bind).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
