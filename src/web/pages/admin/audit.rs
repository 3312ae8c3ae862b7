//! The audit log: every recorded event, filterable, paged, and exportable as CSV. Refusals
//! of requests without a signed-in user are not events: when the filters ask for denials,
//! the page shows how many of them were counted, grouped by status, reason and path.

use askama::Template;
use axum::{
    extract::State,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    audit::dashboard::{self, CountFilter, CountedGroup, Period},
    display::Zone,
    error::AppError,
    web::{
        AppState,
        http::{Chrome, CurrentUser, TextQuery, render},
    },
};

const PAGE_SIZE: i64 = 50;
const CSV_LIMIT: i64 = 50_000;

/// Filters shared by the page and the CSV export. Empty strings mean "any".
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Filters {
    #[serde(default)]
    pub event: String,
    /// "401", "403", "429", or "denials" (401 and 403).
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub reason: String,
    /// Matches the actor or the target.
    #[serde(default)]
    pub username: String,
    /// An address, or a network (`203.0.113.0/24`) as the dashboard lists them.
    #[serde(default)]
    pub ip: String,
    #[serde(default)]
    pub path: String,
    /// "1h", "24h", "7d", "90d"; empty: everything kept.
    #[serde(default)]
    pub window: String,
    #[serde(default)]
    pub page: Option<i64>,
}

fn non_empty(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.chars().take(512).collect())
}

pub fn window_seconds(window: &str) -> Option<f64> {
    match window {
        "1h" => Some(3600.0),
        "24h" => Some(86_400.0),
        "7d" => Some(7.0 * 86_400.0),
        "90d" => Some(90.0 * 86_400.0),
        _ => None,
    }
}

impl Filters {
    fn statuses(&self) -> Option<Vec<i16>> {
        match self.status.as_str() {
            "denials" => Some(vec![401, 403]),
            s => s.parse::<i16>().ok().map(|status| vec![status]),
        }
    }

    /// The exact address to match, or the network (CIDR) its events' addresses fall in.
    fn address(&self) -> (Option<String>, Option<String>) {
        let Some(ip) = non_empty(&self.ip) else {
            return (None, None);
        };
        match ip.parse::<ipnet::IpNet>() {
            Ok(net) => (None, Some(net.trunc().to_string())),
            Err(_) => (Some(ip), None),
        }
    }

    /// Whether these filters ask for refusals that may have been counted rather than
    /// recorded (no user named: counted refusals have none).
    fn asks_for_counted(&self) -> bool {
        let denied = matches!(self.status.as_str(), "401" | "403" | "denials");
        ((self.event.is_empty() && denied) || self.event == "denied")
            && (self.status.is_empty() || denied)
            && non_empty(&self.username).is_none()
    }

    /// The query string for links that keep these filters.
    pub fn query(&self) -> String {
        let pairs = [
            ("event", &self.event),
            ("status", &self.status),
            ("reason", &self.reason),
            ("username", &self.username),
            ("ip", &self.ip),
            ("path", &self.path),
            ("window", &self.window),
        ];
        let present: Vec<(&str, &String)> =
            pairs.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        serde_urlencoded::to_string(present).unwrap_or_default()
    }
}

pub struct Row {
    pub at: OffsetDateTime,
    pub event: String,
    pub status: Option<i16>,
    pub reason: Option<String>,
    pub username: Option<String>,
    pub target: Option<String>,
    pub path: Option<String>,
    pub method: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

async fn fetch(
    state: &AppState,
    filters: &Filters,
    limit: i64,
    offset: i64,
) -> Result<Vec<Row>, AppError> {
    let (exact, network) = filters.address();
    let rows = sqlx::query_as!(
        Row,
        r#"
        SELECT at, event, status, reason, username, target, path, method, ip, user_agent, request_id
        FROM audit_events
        WHERE ($1::text IS NULL OR event = $1)
          AND ($2::smallint[] IS NULL OR status = ANY($2))
          AND ($3::text IS NULL OR reason = $3)
          AND ($4::text IS NULL OR username = $4 OR target = $4)
          AND ($5::text IS NULL OR ip = $5)
          AND ($6::text IS NULL OR path = $6)
          AND ($7::float8 IS NULL OR at > now() - make_interval(secs => $7))
          AND ($10::text IS NULL OR ip::inet <<= $10::cidr)
        ORDER BY at DESC, id DESC
        LIMIT $8 OFFSET $9
        "#,
        non_empty(&filters.event),
        filters.statuses() as Option<Vec<i16>>,
        non_empty(&filters.reason),
        non_empty(&filters.username),
        exact,
        non_empty(&filters.path),
        window_seconds(&filters.window),
        limit,
        offset,
        network,
    )
    .fetch_all(&state.pool)
    .await?;
    Ok(rows)
}

async fn count(state: &AppState, filters: &Filters) -> Result<i64, AppError> {
    let (exact, network) = filters.address();
    Ok(sqlx::query_scalar!(
        r#"
        SELECT count(*) AS "n!" FROM audit_events
        WHERE ($1::text IS NULL OR event = $1)
          AND ($2::smallint[] IS NULL OR status = ANY($2))
          AND ($3::text IS NULL OR reason = $3)
          AND ($4::text IS NULL OR username = $4 OR target = $4)
          AND ($5::text IS NULL OR ip = $5)
          AND ($6::text IS NULL OR path = $6)
          AND ($7::float8 IS NULL OR at > now() - make_interval(secs => $7))
          AND ($8::text IS NULL OR ip::inet <<= $8::cidr)
        "#,
        non_empty(&filters.event),
        filters.statuses() as Option<Vec<i16>>,
        non_empty(&filters.reason),
        non_empty(&filters.username),
        exact,
        non_empty(&filters.path),
        window_seconds(&filters.window),
        network,
    )
    .fetch_one(&state.pool)
    .await?)
}

/// Counted refusals matching the filters: how many, and the largest groups.
pub struct Counted {
    pub total: i64,
    pub groups: Vec<CountedGroup>,
}

async fn counted(state: &AppState, filters: &Filters) -> Result<Option<Counted>, AppError> {
    if !filters.asks_for_counted() {
        return Ok(None);
    }
    let filter = CountFilter {
        statuses: filters.statuses(),
        reason: non_empty(&filters.reason),
        path: non_empty(&filters.path),
        network: non_empty(&filters.ip),
        period: window_seconds(&filters.window).map(|s| Period::last(s as i64)),
    };
    let (total, groups) = dashboard::counted_refusals(&state.pool, &filter).await?;
    Ok(Some(Counted { total, groups }))
}

pub struct Line {
    pub at: String,
    pub event: String,
    pub status: String,
    pub reason: String,
    pub username: String,
    pub target: String,
    pub request: String,
    pub ip: String,
    pub request_id: String,
}

pub fn lines(rows: Vec<Row>, zone: &Zone) -> Vec<Line> {
    rows.into_iter()
        .map(|r| Line {
            at: zone.time(r.at),
            event: r.event,
            status: r.status.map(|s| s.to_string()).unwrap_or_default(),
            reason: r.reason.unwrap_or_default(),
            username: r.username.unwrap_or_default(),
            target: r.target.unwrap_or_default(),
            request: match (r.method, r.path) {
                (Some(m), Some(p)) => format!("{m} {p}"),
                (_, Some(p)) => p,
                _ => String::new(),
            },
            ip: r.ip.unwrap_or_default(),
            request_id: r.request_id.unwrap_or_default(),
        })
        .collect()
}

/// Events a filter can name (the ones the app records).
pub const EVENTS: [&str; 21] = [
    "denied",
    "sign_in",
    "sign_in_failed",
    "sign_out",
    "session_expired",
    "session_revoked",
    "password_changed",
    "password_change_failed",
    "user_created",
    "role_changed",
    "user_disabled",
    "user_enabled",
    "password_reset",
    "user_deleted",
    "sessions_revoked",
    "sessions_revoked_everyone",
    "throttled",
    "throttle_cleared",
    "access_requested",
    "access_granted",
    "access_declined",
];

#[derive(Template)]
#[template(path = "admin/audit.html")]
struct AuditPage {
    chrome: Chrome,
    filters: Filters,
    events: [&'static str; 21],
    lines: Vec<Line>,
    counted: Option<Counted>,
    total: i64,
    page: i64,
    pages: i64,
    query: String,
}

pub async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    TextQuery(filters): TextQuery<Filters>,
) -> Result<Response, AppError> {
    let total = count(&state, &filters).await?;
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let page = filters.page.unwrap_or(1).clamp(1, pages);
    let rows = fetch(&state, &filters, PAGE_SIZE, (page - 1) * PAGE_SIZE).await?;
    let counted = counted(&state, &filters).await?;
    Ok(render(&AuditPage {
        chrome: super::admin_chrome(&state, "Audit log", &user).await?,
        query: filters.query(),
        filters,
        events: EVENTS,
        lines: lines(rows, &Zone::of(user.time_zone.as_deref())),
        counted,
        total,
        page,
        pages,
    }))
}

/// One CSV field. Quoted when needed (RFC 4180), and defused when a spreadsheet would take
/// it for a formula (OWASP "CSV injection": leading = + - @ tab CR get a leading quote).
fn csv_field(value: &str) -> String {
    let defused = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if defused.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", defused.replace('"', "\"\""))
    } else {
        defused
    }
}

pub async fn csv(
    State(state): State<AppState>,
    CurrentUser(_user): CurrentUser,
    TextQuery(filters): TextQuery<Filters>,
) -> Result<Response, AppError> {
    let rows = fetch(&state, &filters, CSV_LIMIT, 0).await?;
    let mut out = String::from(
        "time,event,status,reason,username,target,method,path,ip,user_agent,request_id\r\n",
    );
    for r in rows {
        let fields = [
            r.at.format(&Rfc3339).unwrap_or_default(),
            r.event,
            r.status.map(|s| s.to_string()).unwrap_or_default(),
            r.reason.unwrap_or_default(),
            r.username.unwrap_or_default(),
            r.target.unwrap_or_default(),
            r.method.unwrap_or_default(),
            r.path.unwrap_or_default(),
            r.ip.unwrap_or_default(),
            r.user_agent.unwrap_or_default(),
            r.request_id.unwrap_or_default(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    let mut response = out.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"portcullis-audit.csv\""),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd|' /C calc'!A0"), "'=cmd|' /C calc'!A0");
        assert_eq!(csv_field("-1+1"), "'-1+1");
    }
}
