//! The 401/403 dashboard: who is refused, where, and why — with the fix for each pattern.
//!
//! Each panel's question is one function in `audit::dashboard` (counted refusals of
//! anonymous requests plus recorded refusals of signed-in people); this module asks them
//! all at once, turns the answers into links and advice, and lays out the chart, which the
//! template draws.

use askama::Template;
use axum::{extract::State, response::Response};
use serde::Deserialize;
use time::OffsetDateTime;

use super::{
    audit::{Filters, Line},
    chart::Chart,
};
use crate::{
    audit::dashboard::{self, Bucket, PathPattern, Period, Refusal},
    display::Zone,
    error::AppError,
    web::{
        AppState,
        http::{Chrome, CurrentUser, TextQuery, render},
    },
};

/// A dashboard window: its length and the chart's bucket size, in seconds.
#[derive(Debug, Clone, Copy)]
struct Window {
    key: &'static str,
    label: &'static str,
    seconds: i64,
    bucket: i64,
}

const WINDOWS: [Window; 3] = [
    Window {
        key: "1h",
        label: "last hour",
        seconds: 3600,
        bucket: 300,
    },
    Window {
        key: "24h",
        label: "last day",
        seconds: 86_400,
        bucket: 3600,
    },
    Window {
        key: "7d",
        label: "last week",
        seconds: 7 * 86_400,
        bucket: 6 * 3600,
    },
];

#[derive(Debug, Deserialize, Default)]
pub struct DashboardQuery {
    #[serde(default)]
    window: String,
}

pub struct Count {
    pub label: String,
    pub status: String,
    pub n: i64,
    pub link: String,
}

pub struct Highlight {
    pub what: String,
    pub n: i64,
    pub advice: String,
    pub link: String,
}

pub struct CountedLine {
    pub minute: String,
    pub status: i16,
    pub reason: String,
    pub path: String,
    pub n: i64,
    pub link: String,
}

#[derive(Template)]
#[template(path = "admin/denials.html")]
struct DashboardPage {
    chrome: Chrome,
    window_key: &'static str,
    window_label: &'static str,
    windows: [(&'static str, &'static str); 3],
    unauthorized: i64,
    forbidden: i64,
    failed_sign_ins: i64,
    throttled: i64,
    by_reason: Vec<Count>,
    by_path: Vec<Count>,
    by_user: Vec<Count>,
    by_network: Vec<Count>,
    chart: Chart,
    chart_title: String,
    chart_rows: Vec<(String, i64, i64)>,
    ip_highlights: Vec<Highlight>,
    role_highlights: Vec<Highlight>,
    path_highlights: Vec<Highlight>,
    recent: Vec<Line>,
    counted: Vec<CountedLine>,
    queued: usize,
    waited: u64,
    lost: u64,
}

fn audit_link(window: &str, pairs: &[(&str, &str)]) -> String {
    let filters = Filters {
        window: window.to_owned(),
        ..Filters::default()
    };
    let mut query = filters.query();
    for (name, value) in pairs {
        let pair = serde_urlencoded::to_string([(name, value)]).unwrap_or_default();
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str(&pair);
    }
    format!("/admin/audit?{query}")
}

pub async fn show(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    TextQuery(query): TextQuery<DashboardQuery>,
) -> Result<Response, AppError> {
    let zone = Zone::of(user.time_zone.as_deref());
    let window = WINDOWS
        .iter()
        .find(|w| w.key == query.window)
        .copied()
        .unwrap_or(WINDOWS[1]);
    // This instance's refusals of the last second are still in memory: count them too.
    if let Err(err) = state.audit.flush_denials().await {
        tracing::warn!(error = %err, "could not write pending refusal counts");
    }
    let (pool, period) = (&state.pool, Period::last(window.seconds));
    let (
        totals,
        series,
        reasons,
        paths,
        users,
        networks,
        failing,
        refused,
        answering,
        recent,
        counted,
    ) = tokio::try_join!(
        dashboard::totals(pool, period),
        dashboard::series(pool, period, window.bucket),
        dashboard::by_reason(pool, period),
        dashboard::by_path(pool, period),
        dashboard::by_user(pool, period),
        dashboard::by_network(pool, period),
        dashboard::failed_sign_ins_by_address(pool, period),
        dashboard::repeated_refusals(pool, period),
        dashboard::paths_answering_401(pool, period),
        dashboard::latest_refusals(pool, period),
        dashboard::latest_counts(pool, period),
    )?;
    let link = |pairs: &[(&str, &str)]| audit_link(window.key, pairs);
    let top = |counts: Vec<dashboard::Count>, filter: &str| -> Vec<Count> {
        counts
            .into_iter()
            .map(|c| Count {
                link: link(&[("status", "denials"), (filter, &c.value)]),
                label: c.value,
                status: String::new(),
                n: c.n,
            })
            .collect()
    };
    let chart_rows = chart_rows(&series, window, &zone);
    Ok(render(&DashboardPage {
        chrome: super::admin_chrome(&state, "401/403 dashboard", &user).await?,
        window_key: window.key,
        window_label: window.label,
        windows: WINDOWS.map(|w| (w.key, w.label)),
        unauthorized: totals.unauthorized,
        forbidden: totals.forbidden,
        failed_sign_ins: totals.failed_sign_ins,
        throttled: totals.throttled,
        by_reason: reasons
            .into_iter()
            .map(|r| Count {
                link: link(&[("status", &r.status.to_string()), ("reason", &r.reason)]),
                label: r.reason,
                status: r.status.to_string(),
                n: r.n,
            })
            .collect(),
        by_path: top(paths, "path"),
        by_user: top(users, "username"),
        by_network: top(networks, "ip"),
        chart: Chart::new(&chart_rows),
        chart_title: format!(
            "401 and 403 responses per {} over the {}",
            humanize(window.bucket),
            window.label
        ),
        chart_rows,
        ip_highlights: failing
            .into_iter()
            .map(|r| Highlight {
                what: format!(
                    "{} failed sign-ins from {} ({} username(s) tried)",
                    r.n, r.ip, r.usernames
                ),
                n: r.n,
                advice: if r.usernames > 3 {
                    "Many usernames from one address looks like password guessing: throttling \
                     slows it down; consider blocking the address at the proxy or firewall."
                        .into()
                } else {
                    "A few names from one address is usually someone who forgot a password or \
                     has Caps Lock on: check the credentials with them, or reset the password."
                        .into()
                },
                link: link(&[("event", "sign_in_failed"), ("ip", &r.ip)]),
            })
            .collect(),
        role_highlights: refused
            .into_iter()
            .map(|r| Highlight {
                what: format!(
                    "{} was refused {} {} times (needs {})",
                    r.username, r.path, r.n, r.required
                ),
                n: r.n,
                advice: format!(
                    "A missing role? If {} should see this page, grant the {} role; if not, \
                     tell them whom to ask. Signing in again will not help them.",
                    r.username, r.required
                ),
                link: r
                    .user_id
                    .map(|id| format!("/admin/users/{id}"))
                    .unwrap_or_else(|| link(&[("username", &r.username)])),
            })
            .collect(),
        path_highlights: answering
            .into_iter()
            .map(|p| path_highlight(p, window.key))
            .collect(),
        recent: recent.into_iter().map(|r| line(r, &zone)).collect(),
        counted: counted
            .into_iter()
            .map(|c| CountedLine {
                minute: zone.time(c.minute),
                link: link(&[
                    ("status", &c.status.to_string()),
                    ("reason", &c.reason),
                    ("path", &c.path),
                ]),
                status: c.status,
                reason: c.reason,
                path: c.path,
                n: c.n,
            })
            .collect(),
        queued: state.audit.queued(),
        waited: state.audit.waited(),
        lost: state.audit.lost(),
    }))
}

/// Every bucket of the window, oldest first, with its label: (label, 401s, 403s).
fn chart_rows(series: &[Bucket], window: Window, zone: &Zone) -> Vec<(String, i64, i64)> {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let last = now.div_euclid(window.bucket);
    let first = last - window.seconds / window.bucket + 1;
    (first..=last)
        .map(|bucket| {
            let (u, f) = series
                .iter()
                .find(|b| b.bucket == bucket)
                .map_or((0, 0), |b| (b.unauthorized, b.forbidden));
            (bucket_label(bucket, window, zone), u, f)
        })
        .collect()
}

fn path_highlight(r: PathPattern, window: &str) -> Highlight {
    let advice = if r.expired * 2 >= r.n {
        "Mostly expired sessions: people are timed out while working here. If that is too \
         often, consider a longer --idle-timeout; they sign in again and return to the page."
    } else if r.invalid * 2 >= r.n {
        "Mostly unknown or malformed session cookies: stale bookmarks from before a sign-out, \
         or a client probing. If one network dominates, look at it."
    } else if r.revoked * 2 >= r.n {
        "Mostly revoked sessions: after password changes, disabling or revocations, the \
         holders are told they were signed out. Expected after such changes."
    } else {
        "Mostly requests without a session: links or bookmarks to a protected page from \
         outside. Expected — people sign in and land on the page; a broken link if it never \
         leads to a sign-in."
    };
    Highlight {
        what: format!(
            "{} answered 401 {} times ({} no session, {} expired, {} invalid, {} revoked)",
            r.path, r.n, r.no_session, r.expired, r.invalid, r.revoked
        ),
        n: r.n,
        advice: advice.into(),
        link: audit_link(window, &[("status", "401"), ("path", &r.path)]),
    }
}

fn line(r: Refusal, zone: &Zone) -> Line {
    Line {
        at: zone.time(r.at),
        event: "denied".into(),
        status: r.status.map(|s| s.to_string()).unwrap_or_default(),
        reason: r.reason.unwrap_or_default(),
        username: r.username.unwrap_or_default(),
        target: String::new(),
        request: match (r.method, r.path) {
            (Some(m), Some(p)) => format!("{m} {p}"),
            (_, Some(p)) => p,
            _ => String::new(),
        },
        ip: r.ip.unwrap_or_default(),
        request_id: r.request_id.unwrap_or_default(),
    }
}

/// A chart bucket's start, on the axis, in the viewer's zone.
fn bucket_label(bucket: i64, window: Window, zone: &Zone) -> String {
    let at = OffsetDateTime::from_unix_timestamp(bucket * window.bucket)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let pattern = if window.seconds > 86_400 {
        "%m-%d %H:%M"
    } else {
        "%H:%M"
    };
    zone.format(at, pattern)
}

fn humanize(seconds: i64) -> String {
    match seconds {
        s if s % 3600 == 0 && s > 3600 => format!("{} hours", s / 3600),
        3600 => "hour".into(),
        s => format!("{} minutes", s / 60),
    }
}
