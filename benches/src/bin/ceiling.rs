//! The ceiling: what a database-backed authenticated page costs at minimum.
//!
//! A bare axum app that serves Portcullis' `/account` page and `/api/me` answer after
//! exactly one PostgreSQL query keyed by a cookie value (token joined to user), with no
//! sessions library, no hashing, no middleware. Anything Portcullis does beyond this shows
//! up as the gap between the two. It answers with the same bytes (page and JSON: same
//! layout, same time formatting, the same static security headers), so the comparison is
//! of the work around them.

use std::net::SocketAddr;

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, StatusCode, Uri, header},
    response::{Html, IntoResponse, Redirect, Response},
    routing::get,
};
use clap::Parser;
use portcullis::web::http::frame::{NO_STORE, NOINDEX, ROBOTS_TAG, SECURITY_HEADERS};
use portcullis_bench::{CEILING_COOKIE, page};
use serde::Serialize;
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

#[derive(sqlx::FromRow)]
struct AccountRow {
    #[sqlx(flatten)]
    who: Row,
    token: String,
    /// The user's sessions, aggregated in the same query (as Portcullis does for /account).
    sessions: sqlx::types::Json<Vec<SessionJson>>,
    second_factor: bool,
    recovery: sqlx::types::Json<RecoveryJson>,
    requests: sqlx::types::Json<Vec<RequestJson>>,
}

#[derive(serde::Deserialize)]
struct RecoveryJson {
    codes_left: i64,
    #[serde(default, with = "time::serde::rfc3339::option")]
    last_used_at: Option<OffsetDateTime>,
}

#[derive(serde::Deserialize)]
struct RequestJson {
    role: String,
    path: String,
    status: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

#[derive(serde::Deserialize)]
struct SessionJson {
    id: i64,
    token: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    ip: String,
    user_agent: String,
}

/// One statement per page kind, each without parameters that change its plan, so
/// PostgreSQL plans each once per connection (as Portcullis' session lookup does).
const WHO: &str = "SELECT u.username, u.role, t.created_at, t.expires_at, now() AS now \
     FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.token = $1";
const WHO_WITH_SESSIONS: &str = "SELECT u.username, u.role, t.created_at, t.expires_at, \
     now() AS now, t.token, \
     (SELECT coalesce(json_agg(json_build_object('id', o.id, 'token', o.token, \
         'created_at', o.created_at, 'expires_at', o.expires_at, 'ip', o.ip, \
         'user_agent', o.user_agent) ORDER BY o.created_at DESC), '[]'::json) \
      FROM (SELECT * FROM tokens WHERE user_id = t.user_id AND expires_at > now() \
            ORDER BY created_at DESC LIMIT 50) o) AS sessions, \
     EXISTS (SELECT 1 FROM second_factors f WHERE f.user_id = t.user_id \
             AND f.enabled_at IS NOT NULL) AS second_factor, \
     (SELECT json_build_object('codes_left', count(*) FILTER (WHERE c.used_at IS NULL), \
             'last_used_at', max(c.used_at)) \
      FROM recovery_codes c WHERE c.user_id = t.user_id) AS recovery, \
     (SELECT coalesce(json_agg(json_build_object('role', r.role, 'path', r.path, \
             'status', r.status, 'created_at', r.created_at) ORDER BY r.created_at DESC), '[]'::json) \
      FROM (SELECT * FROM access_requests WHERE user_id = t.user_id \
            ORDER BY created_at DESC LIMIT 10) r) AS requests \
     FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.token = $1";

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

/// The sign-in redirect, with the bytes Portcullis sends: `next` encoded, and the same
/// static headers as a page (Portcullis puts them on every answer). Without them the
/// ceiling's 303 was three headers against eleven, and the difference was paid by the load
/// generator and the kernel rather than measured in the server (benches/ANALYSIS.md).
fn to_login(uri: &Uri) -> Response {
    let next = uri.path().replace('/', "%2F");
    with_page_headers(Redirect::to(&format!("/login?next={next}&notice=required")).into_response())
}

/// The one query: the signed-in user behind the cookie, or the login redirect.
async fn signed_in<R>(
    pool: &PgPool,
    headers: &HeaderMap,
    uri: &Uri,
    sql: &str,
) -> Result<R, Response>
where
    R: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin + Live,
{
    let Some(token) = token(headers) else {
        return Err(to_login(uri));
    };
    let row = sqlx::query_as::<_, R>(sql)
        .bind(token)
        .fetch_optional(pool)
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE.into_response())?;
    match row {
        Some(row) if row.live() => Ok(row),
        _ => Err(to_login(uri)),
    }
}

/// Whether the token is still valid by the database's clock.
trait Live {
    fn live(&self) -> bool;
}

impl Live for Row {
    fn live(&self) -> bool {
        self.now < self.expires_at
    }
}

impl Live for AccountRow {
    fn live(&self) -> bool {
        self.who.live()
    }
}

fn with_page_headers(mut response: Response) -> Response {
    // Portcullis' own constants, so the bytes stay the same; built at compile time, as the
    // frame builds them (`from_static` at run time checks each name on every request).
    let headers = response.headers_mut();
    headers.reserve(SECURITY_HEADERS.len() + 2);
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, value);
    }
    headers.insert(header::CACHE_CONTROL, NO_STORE);
    headers.insert(ROBOTS_TAG, NOINDEX);
    response
}

fn html(status: StatusCode, body: String) -> Response {
    with_page_headers((status, Html(body)).into_response())
}

/// A token's length of filler where Portcullis puts its CSRF token (same bytes).
const NO_CSRF: &str = "ceiling-has-no-csrf-token-kept-for-the-size";

fn account_page(row: &AccountRow) -> String {
    let who = &row.who;
    let viewer = page::Viewer {
        username: &who.username,
        role: &who.role,
        csrf: NO_CSRF,
    };
    let display = portcullis::display::display_time;
    // The same helpers Portcullis' session cards use: times in the viewer's zone (UTC for
    // the benchmark's users) and the device in words.
    let zone = portcullis::display::Zone::default();
    let now = OffsetDateTime::now_utc();
    let sessions: Vec<page::SessionLine> = row
        .sessions
        .0
        .iter()
        .map(|s| page::SessionLine {
            id: s.id,
            device: portcullis::display::device_name(&s.user_agent),
            user_agent: if s.user_agent.is_empty() {
                "No user agent was sent.".into()
            } else {
                s.user_agent.clone()
            },
            method: portcullis::display::sign_in_method(Some("password")),
            created: zone.moment(s.created_at, now),
            last_seen: zone.moment(s.created_at, now),
            expires: zone.moment(s.expires_at, now),
            ip: s.ip.clone(),
            current: s.token == row.token,
        })
        .collect();
    let recently = |at: &OffsetDateTime| OffsetDateTime::now_utc() - *at < time::Duration::days(30);
    let requests: Vec<page::RequestLine> = row
        .requests
        .0
        .iter()
        .map(|r| page::RequestLine {
            role: r.role.clone(),
            path: r.path.clone(),
            status: r.status.clone(),
            asked: display(r.created_at),
        })
        .collect();
    page::account(
        &viewer,
        &page::Account {
            signed_in_at: &display(who.created_at),
            idle_expires_at: &display(who.expires_at),
            absolute_expires_at: &display(who.expires_at),
            previous_sign_in: None,
            sessions: &sessions,
            min_password: 15,
            second_factor: row.second_factor,
            recovery_used: row.recovery.0.last_used_at.filter(recently).map(display),
            recovery_left: row.recovery.0.codes_left,
            requests: &requests,
        },
    )
}

async fn account(State(pool): State<PgPool>, headers: HeaderMap, uri: Uri) -> Response {
    match signed_in::<AccountRow>(&pool, &headers, &uri, WHO_WITH_SESSIONS).await {
        Ok(row) => html(StatusCode::OK, account_page(&row)),
        Err(response) => response,
    }
}

/// `GET /api/me`, the shape Portcullis answers.
#[derive(Serialize)]
struct Me<'a> {
    username: &'a str,
    role: &'a str,
    session: SessionTimes,
}

#[derive(Serialize)]
struct SessionTimes {
    #[serde(with = "time::serde::rfc3339")]
    signed_in_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    idle_expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    absolute_expires_at: OffsetDateTime,
}

async fn me(State(pool): State<PgPool>, headers: HeaderMap, uri: Uri) -> Response {
    match signed_in::<Row>(&pool, &headers, &uri, WHO).await {
        Ok(row) => with_page_headers(
            Json(Me {
                username: &row.username,
                role: &row.role,
                session: SessionTimes {
                    signed_in_at: row.created_at,
                    idle_expires_at: row.expires_at,
                    absolute_expires_at: row.expires_at,
                },
            })
            .into_response(),
        ),
        Err(_) => StatusCode::UNAUTHORIZED.into_response(),
    }
}

async fn reports(State(pool): State<PgPool>, headers: HeaderMap, uri: Uri) -> Response {
    let row = match signed_in::<Row>(&pool, &headers, &uri, WHO).await {
        Ok(row) => row,
        Err(response) => return response,
    };
    let viewer = page::Viewer {
        username: &row.username,
        role: &row.role,
        csrf: NO_CSRF,
    };
    if row.role == "member" {
        return html(
            StatusCode::FORBIDDEN,
            page::forbidden(&viewer, "editor", uri.path()),
        );
    }
    html(
        StatusCode::OK,
        page::forbidden(&viewer, "nothing more", uri.path()),
    )
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
        .route("/api/me", get(me))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(pool);
    let listener = tokio::net::TcpListener::bind(args.bind).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
