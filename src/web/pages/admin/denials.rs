//! The 401/403 dashboard: who is refused, where, and why — with the fix for each pattern.

use std::fmt::Write as _;

use askama::Template;
use axum::{extract::State, response::Response};
use serde::Deserialize;
use time::OffsetDateTime;

use super::audit::{Filters, Line, lines};
use crate::{
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
    by_ip: Vec<Count>,
    chart: String,
    chart_rows: Vec<(String, i64, i64)>,
    ip_highlights: Vec<Highlight>,
    role_highlights: Vec<Highlight>,
    path_highlights: Vec<Highlight>,
    recent: Vec<Line>,
    dropped: u64,
    queued: usize,
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
    let window = WINDOWS
        .iter()
        .find(|w| w.key == query.window)
        .copied()
        .unwrap_or(WINDOWS[1]);
    let secs = window.seconds as f64;
    let pool = &state.pool;

    let totals = sqlx::query!(
        r#"
        SELECT count(*) FILTER (WHERE status = 401) AS "unauthorized!",
               count(*) FILTER (WHERE status = 403) AS "forbidden!",
               count(*) FILTER (WHERE event = 'sign_in_failed') AS "failed!",
               count(*) FILTER (WHERE status = 429) AS "throttled!"
        FROM audit_events
        WHERE status IS NOT NULL AND at > now() - make_interval(secs => $1)
        "#,
        secs
    )
    .fetch_one(pool)
    .await?;

    let by_reason = sqlx::query!(
        r#"
        SELECT status AS "status!", coalesce(reason, '') AS "reason!", count(*) AS "n!"
        FROM audit_events
        WHERE status IN (401, 403) AND at > now() - make_interval(secs => $1)
        GROUP BY 1, 2 ORDER BY 3 DESC, 2 LIMIT 20
        "#,
        secs
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|r| Count {
        link: audit_link(
            window.key,
            &[("status", &r.status.to_string()), ("reason", &r.reason)],
        ),
        label: r.reason,
        status: r.status.to_string(),
        n: r.n,
    })
    .collect();

    // Top paths, users and addresses among 401s and 403s.
    let tops = sqlx::query!(
        r#"
        SELECT dimension AS "dimension!", value AS "value!", n AS "n!" FROM (
            SELECT 'path' AS dimension, path AS value, count(*) AS n,
                   row_number() OVER (ORDER BY count(*) DESC, path) AS rank
            FROM audit_events
            WHERE status IN (401, 403) AND path IS NOT NULL
              AND at > now() - make_interval(secs => $1)
            GROUP BY path
            UNION ALL
            SELECT 'user', username, count(*),
                   row_number() OVER (ORDER BY count(*) DESC, username)
            FROM audit_events
            WHERE status IN (401, 403) AND username IS NOT NULL
              AND at > now() - make_interval(secs => $1)
            GROUP BY username
            UNION ALL
            SELECT 'ip', ip, count(*), row_number() OVER (ORDER BY count(*) DESC, ip)
            FROM audit_events
            WHERE status IN (401, 403) AND ip IS NOT NULL
              AND at > now() - make_interval(secs => $1)
            GROUP BY ip
        ) t WHERE rank <= 10 ORDER BY dimension, n DESC, value
        "#,
        secs
    )
    .fetch_all(pool)
    .await?;
    let top = |dimension: &str, filter: &str| -> Vec<Count> {
        tops.iter()
            .filter(|r| r.dimension == dimension)
            .map(|r| Count {
                label: r.value.clone(),
                status: String::new(),
                n: r.n,
                link: audit_link(window.key, &[("status", "denials"), (filter, &r.value)]),
            })
            .collect()
    };
    let by_path = top("path", "path");
    let by_user = top("user", "username");
    let by_ip = top("ip", "ip");

    let series = sqlx::query!(
        r#"
        SELECT floor(extract(epoch FROM at) / $2)::bigint AS "bucket!",
               count(*) FILTER (WHERE status = 401) AS "unauthorized!",
               count(*) FILTER (WHERE status = 403) AS "forbidden!"
        FROM audit_events
        WHERE status IN (401, 403) AND at > now() - make_interval(secs => $1)
        GROUP BY 1
        "#,
        secs,
        window.bucket as f64,
    )
    .fetch_all(pool)
    .await?;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let last = now.div_euclid(window.bucket);
    let count = (window.seconds / window.bucket) as usize;
    let first = last - count as i64 + 1;
    let mut buckets: Vec<(i64, i64, i64)> = (first..=last).map(|b| (b, 0, 0)).collect();
    for row in series {
        if let Some(slot) = buckets.iter_mut().find(|(b, _, _)| *b == row.bucket) {
            slot.1 = row.unauthorized;
            slot.2 = row.forbidden;
        }
    }
    let chart = chart_svg(&buckets, window);
    let chart_rows = buckets
        .iter()
        .map(|(b, u, f)| (bucket_label(*b, window), *u, *f))
        .collect();

    let ip_highlights = sqlx::query!(
        r#"
        SELECT ip AS "ip!", count(*) AS "n!", count(DISTINCT username) AS "users!"
        FROM audit_events
        WHERE event = 'sign_in_failed' AND ip IS NOT NULL
          AND at > now() - make_interval(secs => $1)
        GROUP BY ip HAVING count(*) >= 3 ORDER BY 2 DESC LIMIT 5
        "#,
        secs
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|r| Highlight {
        what: format!(
            "{} failed sign-ins from {} ({} username(s) tried)",
            r.n, r.ip, r.users
        ),
        n: r.n,
        advice: if r.users > 3 {
            "Many usernames from one address looks like password guessing: throttling slows \
             it down; consider blocking the address at the proxy or firewall."
                .into()
        } else {
            "A few names from one address is usually someone who forgot a password or has \
             Caps Lock on: check the credentials with them, or reset the password."
                .into()
        },
        link: audit_link(window.key, &[("event", "sign_in_failed"), ("ip", &r.ip)]),
    })
    .collect();

    let role_highlights = sqlx::query!(
        r#"
        SELECT e.username AS "username!", e.path AS "path!",
               coalesce(e.detail->>'required', '?') AS "required!", count(*) AS "n!",
               min(u.id) AS user_id
        FROM audit_events e LEFT JOIN users u ON u.username = e.username
        WHERE e.status = 403 AND e.reason = 'insufficient_role' AND e.username IS NOT NULL
          AND e.path IS NOT NULL AND e.at > now() - make_interval(secs => $1)
        GROUP BY 1, 2, 3 HAVING count(*) >= 3 ORDER BY 4 DESC LIMIT 5
        "#,
        secs
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|r| Highlight {
        what: format!(
            "{} was refused {} {} times (needs {})",
            r.username, r.path, r.n, r.required
        ),
        n: r.n,
        advice: format!(
            "A missing role? If {} should see this page, grant the {} role; if not, tell them \
             whom to ask. Signing in again will not help them.",
            r.username, r.required
        ),
        link: r
            .user_id
            .map(|id| format!("/admin/users/{id}"))
            .unwrap_or_else(|| audit_link(window.key, &[("username", &r.username)])),
    })
    .collect();

    let path_highlights = sqlx::query!(
        r#"
        SELECT path AS "path!", count(*) AS "n!",
               count(*) FILTER (WHERE reason IN ('expired_idle', 'expired_absolute')) AS "expired!",
               count(*) FILTER (WHERE reason = 'no_session') AS "no_session!",
               count(*) FILTER (WHERE reason IN ('tampered_cookie', 'unknown_session')) AS "invalid!",
               count(*) FILTER (WHERE reason IN ('revoked', 'user_disabled')) AS "revoked!"
        FROM audit_events
        WHERE status = 401 AND event = 'denied' AND path IS NOT NULL
          AND at > now() - make_interval(secs => $1)
        GROUP BY path ORDER BY 2 DESC LIMIT 5
        "#,
        secs
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|r| {
        let advice = if r.expired * 2 >= r.n {
            "Mostly expired sessions: people are timed out while working here. If that is too \
             often, consider a longer --idle-timeout; they sign in again and return to the page."
        } else if r.invalid * 2 >= r.n {
            "Mostly unknown or malformed session cookies: stale bookmarks from before a sign-out, \
             or a client probing. If one address dominates, look at it."
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
            link: audit_link(window.key, &[("status", "401"), ("path", &r.path)]),
        }
    })
    .collect();

    let recent = sqlx::query_as!(
        super::audit::Row,
        r#"
        SELECT at, event, status, reason, username, target, path, method, ip, user_agent, request_id
        FROM audit_events
        WHERE status IN (401, 403) AND at > now() - make_interval(secs => $1)
        ORDER BY at DESC, id DESC LIMIT 20
        "#,
        secs
    )
    .fetch_all(pool)
    .await?;

    Ok(render(&DashboardPage {
        chrome: super::admin_chrome(&state, "401/403 dashboard", &user).await?,
        window_key: window.key,
        window_label: window.label,
        windows: WINDOWS.map(|w| (w.key, w.label)),
        unauthorized: totals.unauthorized,
        forbidden: totals.forbidden,
        failed_sign_ins: totals.failed,
        throttled: totals.throttled,
        by_reason,
        by_path,
        by_user,
        by_ip,
        chart,
        chart_rows,
        ip_highlights,
        role_highlights,
        path_highlights,
        recent: lines(recent),
        dropped: state.audit.dropped(),
        queued: state.audit.queued(),
    }))
}

fn bucket_label(bucket: i64, window: Window) -> String {
    let at = OffsetDateTime::from_unix_timestamp(bucket * window.bucket)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let format = if window.seconds > 86_400 {
        time::macros::format_description!("[month]-[day] [hour]:[minute]")
    } else {
        time::macros::format_description!("[hour]:[minute]")
    };
    at.format(&format).unwrap_or_default()
}

/// A stacked bar chart of 401s and 403s per bucket, as inline SVG (no script, no CDN).
/// Colours come from the stylesheet (classes), so the page's CSP needs no inline styles.
fn chart_svg(buckets: &[(i64, i64, i64)], window: Window) -> String {
    const WIDTH: f64 = 720.0;
    const HEIGHT: f64 = 220.0;
    const LEFT: f64 = 44.0;
    const BOTTOM: f64 = 28.0;
    const TOP: f64 = 12.0;
    let max = buckets
        .iter()
        .map(|(_, u, f)| u + f)
        .max()
        .unwrap_or(0)
        .max(1);
    let plot_h = HEIGHT - BOTTOM - TOP;
    let slot = (WIDTH - LEFT - 8.0) / buckets.len().max(1) as f64;
    let bar = (slot * 0.7).max(1.0);
    let y = |v: i64| TOP + plot_h - (v as f64 / max as f64) * plot_h;
    let mut svg = String::new();
    let total_401: i64 = buckets.iter().map(|b| b.1).sum();
    let total_403: i64 = buckets.iter().map(|b| b.2).sum();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="chart-title chart-desc" xmlns="http://www.w3.org/2000/svg"><title id="chart-title">401 and 403 responses per {} over the {}</title><desc id="chart-desc">{total_401} responses with status 401 and {total_403} with status 403; the table below the chart lists every bar.</desc>"#,
        humanize(window.bucket),
        window.label,
    );
    for tick in [0, max / 2, max] {
        let ty = y(tick);
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{LEFT}" x2="{WIDTH}" y1="{ty:.1}" y2="{ty:.1}"/><text class="axis" x="{:.1}" y="{:.1}" text-anchor="end">{tick}</text>"#,
            LEFT - 6.0,
            ty + 4.0
        );
    }
    let label_every = (buckets.len() / 6).max(1);
    for (i, (bucket, unauthorized, forbidden)) in buckets.iter().enumerate() {
        let x = LEFT + i as f64 * slot + (slot - bar) / 2.0;
        let y401 = y(*unauthorized);
        let h401 = TOP + plot_h - y401;
        let y403 = y(unauthorized + forbidden);
        let h403 = y401 - y403;
        if *unauthorized > 0 {
            let _ = write!(
                svg,
                r#"<rect class="bar-401" x="{x:.1}" y="{y401:.1}" width="{bar:.1}" height="{h401:.1}"/>"#
            );
        }
        if *forbidden > 0 {
            let _ = write!(
                svg,
                r#"<rect class="bar-403" x="{x:.1}" y="{y403:.1}" width="{bar:.1}" height="{h403:.1}"/>"#
            );
        }
        if i % label_every == 0 {
            let _ = write!(
                svg,
                r#"<text class="axis" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                x + bar / 2.0,
                HEIGHT - 8.0,
                bucket_label(*bucket, window)
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

fn humanize(seconds: i64) -> String {
    match seconds {
        s if s % 3600 == 0 && s > 3600 => format!("{} hours", s / 3600),
        3600 => "hour".into(),
        s => format!("{} minutes", s / 60),
    }
}
