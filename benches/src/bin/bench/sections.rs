//! The scenario sections of `BENCHMARKS.md` (the header and targets are `report.rs`).

use std::fmt::Write as _;

use crate::{
    Measurement, Results, order,
    report::{errors, mib, opt, page_summary},
};

pub fn measurement_table(out: &mut String, rows: &[Measurement], absent: &[(&str, &str)]) {
    let _ = writeln!(
        out,
        "| Server | req/s | p50 ms | p99 ms | requests | errors | RSS before → after (MiB) | statements/req | write statements/req | rows written/req |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---|---|---:|---:|---:|");
    let mut rows: Vec<&Measurement> = rows.iter().collect();
    rows.sort_by_key(|m| order(&m.server));
    for m in rows {
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.2} | {:.2} | {} | {} | {} → {} | {} | {} | {:.4} |",
            m.server,
            m.load.rps,
            m.load.p50_ms,
            m.load.p99_ms,
            m.load.requests,
            errors(&m.load),
            mib(m.rss_before_kb),
            mib(m.rss_after_kb),
            opt(m.db.statements.map(|s| m.per_request(s)), 3),
            opt(m.db.write_statements.map(|s| m.per_request(s)), 4),
            m.per_request(m.db.tuples_written),
        );
    }
    for (server, why) in absent {
        let _ = writeln!(out, "| {server} | n/a: {why} | | | | | | | | |");
    }
}

pub fn queries(out: &mut String, title: &str, m: &crate::db::DbDelta, requests: u64) {
    if m.queries.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n{title}:\n");
    let _ = writeln!(
        out,
        "| calls/request | rows/call | exec µs/call | statement |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---|");
    for q in m.queries.iter().take(6) {
        let text: String = q.query.chars().take(140).collect();
        let _ = writeln!(
            out,
            "| {:.4} | {:.2} | {:.1} | `{}` |",
            q.calls as f64 / requests.max(1) as f64,
            q.rows as f64 / q.calls.max(1) as f64,
            q.exec_ms * 1000.0 / q.calls.max(1) as f64,
            text.replace('|', "\\|")
        );
    }
    let exec_ms: f64 = m.queries.iter().map(|q| q.exec_ms).sum();
    let _ = writeln!(
        out,
        "\nPostgreSQL execution time: **{:.1} µs per request** (all statements).",
        exec_ms * 1000.0 / requests.max(1) as f64
    );
}

const SERVERS: [(&str, &str); 3] = [
    (
        "portcullis",
        "this repository's release build (`portcullis serve`), default settings",
    ),
    (
        "ceiling",
        "`benches/src/bin/ceiling.rs`: bare axum, one query (token joined to user) keyed by the cookie, no sessions library, no hashing; the same account page, JSON and static headers as Portcullis",
    ),
    (
        "peer",
        "`benches/src/bin/peer.rs`: axum-login 0.17 + tower-sessions 0.14 + tower-sessions-sqlx-store 0.15 (`PostgresStore`), axum-login's example setup adapted to PostgreSQL",
    ),
];

/// Sections 1 to 6 and the notes on counting.
pub fn all(out: &mut String, results: &Results) {
    let plan = &results.plan;
    let _ = writeln!(out, "\n## The servers\n");
    for (name, what) in SERVERS {
        let bytes = results.page_bytes.iter().find(|b| b.server == name);
        let _ = writeln!(
            out,
            "- **{name}**: {what}. `/account` page: {} bytes; `/api/me`: {} bytes; 403 page: {} bytes.",
            bytes.map_or(0, |b| b.account),
            bytes.map_or(0, |b| b.api_me),
            bytes.map_or(0, |b| b.forbidden)
        );
    }
    let _ = writeln!(
        out,
        "\nAll three use the same PostgreSQL server (one database each, so statistics are \
         per server) and are measured one at a time, in rotating order for the hot path."
    );

    page_section(
        out,
        results,
        &results.anonymous_rounds,
        "\n## 1. Anonymous GET of a protected page (the 401 case: redirect to sign-in)\n",
        "`GET /account` without a cookie. Success = any 3xx to the sign-in page (Portcullis \
         and the ceiling answer 303, axum-login 307).",
    );

    page_section(
        out,
        results,
        &results.hot_rounds,
        "\n## 2. Authenticated GET /account (the hot path)\n",
        "The account page: the same bytes from Portcullis and the ceiling (layout, facts, the \
         user's sessions); axum-login cannot list sessions, so its page is shorter.",
    );
    page_section(
        out,
        results,
        &results.api_rounds,
        "\n### GET /api/me\n",
        "Who is signed in, as JSON: one query and a few fields (the ceiling answers the same \
         JSON; axum-login's has the user and the session's expiry).",
    );
    let _ = writeln!(out, "\n### Database round trips per request\n");
    let _ = writeln!(
        out,
        "Counted by a pass-through proxy that parses the PostgreSQL wire protocol between a \
         second instance of each server and the database ({} s per scenario at {} connections, \
         after a warm-up): each `Sync` or simple `Query` the client sends is one round trip (it \
         waits for `ReadyForQuery`). A `Sync` after an `Execute` ran a statement; a bare `Sync` is \
         sqlx's liveness ping (sent when a connection returns to the pool, and before lending it \
         out unless `test_before_acquire(false)`). Throughput is never measured through the proxy.\n",
        plan.census_s, plan.census_connections
    );
    let _ = writeln!(
        out,
        "| Server | Scenario | requests | round trips/req | with statements/req | pings/req |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|");
    for c in &results.census {
        let per = |n: u64| n as f64 / c.requests.max(1) as f64;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.3} | {:.3} | {:.3} |",
            c.server,
            c.scenario,
            c.requests,
            per(c.round_trips.round_trips()),
            per(c.round_trips.statement_round_trips),
            per(c.round_trips.ping_round_trips)
        );
    }
    for name in ["portcullis", "ceiling", "peer"] {
        let mut total = crate::db::DbDelta::default();
        let mut requests = 0;
        for round in &results.hot_rounds {
            if let Some(m) = round.iter().find(|m| m.server == name) {
                total.add(&m.db);
                requests += m.load.requests;
            }
        }
        queries(
            out,
            &format!("Statements of **{name}** on the hot path (pg_stat_statements)"),
            &total,
            requests,
        );
    }

    let _ = writeln!(
        out,
        "\n## 3. Authenticated GET of a page the user may not open (403)\n"
    );
    let _ = writeln!(
        out,
        "`GET /reports` (editor and up) with a member's session, {} s per server. axum-login's \
         `permission_required!` answers an empty 403 by default; the others render a page.\n",
        plan.page_s
    );
    measurement_table(out, &results.forbidden, &[]);

    sign_in_section(out, results);
    crate::flood::section(out, results);

    let s = &results.soak;
    let _ = writeln!(out, "\n## 6. Soak\n");
    let _ = writeln!(
        out,
        "A fresh Portcullis (`{}`) on its own database: {} authenticated `GET /account` requests \
         (target {}), while one new session signs in every {} ms and is abandoned, so sessions \
         idle out and the sweeper deletes them. RSS is read after a warm-up and at the end.\n",
        s.flags, s.load.requests, plan.soak_requests, plan.soak_churn_ms
    );
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(
        out,
        "| Requests | {} in {:.0} s ({:.0} req/s), p50 {:.2} ms, p99 {:.2} ms, errors {} |",
        s.load.requests,
        s.load.duration_s,
        s.load.rps,
        s.load.p50_ms,
        s.load.p99_ms,
        errors(&s.load)
    );
    let _ = writeln!(
        out,
        "| RSS | {} → {} MiB ({:+.1}%) |",
        mib(s.rss_start_kb),
        mib(s.rss_end_kb),
        crate::report::verdicts(results).rss_growth * 100.0
    );
    let _ = writeln!(
        out,
        "| Session rows | {} at start, at most {}, {} at the end; {} sessions signed in meanwhile ({} failed) |",
        s.session_rows_start,
        s.session_rows_max,
        s.session_rows_end,
        s.sessions_created,
        s.churn_failures
    );
    if !s.samples.is_empty() {
        let step = (s.samples.len() / 12).max(1);
        let _ = writeln!(
            out,
            "\n| t (s) | RSS (MiB) | session rows |\n|---:|---:|---:|"
        );
        for sample in s.samples.iter().step_by(step) {
            let _ = writeln!(
                out,
                "| {:.0} | {} | {} |",
                sample.t_s,
                mib(sample.rss_kb),
                sample.session_rows
            );
        }
    }

    crate::instructions::section(out, results);

    let _ = writeln!(out, "\n## How things are counted\n");
    let _ = writeln!(
        out,
        "- **req/s, p50, p99**: wrk's own figures (closed loop: each connection sends its next \
         request when the previous answer arrives). **errors**: socket errors plus responses \
         whose status is not the scenario's expected one (200, 3xx, 403), by status.\n\
         - **statements/req**: `pg_stat_statements` calls in the server's database during the run \
         (reset before it) divided by wrk's completed requests. Includes background work that \
         happened to run (session sweepers).\n\
         - **rows written/req**: rows of the write statements (`INSERT`/`UPDATE`/`DELETE`) in \
         `pg_stat_statements` during the run (table statistics, flushed up to ten seconds \
         late by idle backends, would charge a run with an earlier one's writes).\n\
         - **CPU µs/req**: CPU time (user + system, `/proc/<pid>/stat`) of the server process, \
         and of the whole private PostgreSQL cluster (postmaster, backends, background \
         writers), during the run divided by its requests. The server, PostgreSQL and wrk \
         share two cores, so req/s follows their sum; these say where it went.\n\
         - **RSS**: `VmRSS` of the server process from `/proc/<pid>/status`.\n\
         - Raw figures, per-query breakdowns and every round: `benches/results/latest.json`."
    );
}

/// A signed-in page measured in rounds: the median round per server, ratios, CPU per
/// request of the server and of PostgreSQL, and each round.
fn page_section(
    out: &mut String,
    results: &Results,
    rounds: &[Vec<Measurement>],
    heading: &str,
    about: &str,
) {
    if rounds.is_empty() {
        return;
    }
    let plan = &results.plan;
    let _ = writeln!(out, "{heading}");
    let _ = writeln!(
        out,
        "{about} {} round(s) of {} s per server; the table shows the median round (req/s, \
         p50, p99, CPU) and totals over all rounds.\n",
        rounds.len(),
        plan.hot_s
    );
    let _ = writeln!(
        out,
        "| Server | req/s (median) | vs ceiling | vs peer | p50 ms | p99 ms | server CPU µs/req | PostgreSQL CPU µs/req | requests | errors | RSS before → after (MiB) | statements/req | rows written/req |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"
    );
    let summary = |name| page_summary(rounds, name);
    let (c, peer) = (summary("ceiling"), summary("peer"));
    let rps = |s: &Option<crate::report::PageSummary>| s.as_ref().map_or(0.0, |s| s.rps);
    for s in [summary("portcullis"), summary("ceiling"), summary("peer")]
        .into_iter()
        .flatten()
    {
        let per = |n: u64| n as f64 / s.requests.max(1) as f64;
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.2}× | {:.2}× | {:.2} | {:.2} | {:.0} | {} | {} | {} | {} → {} | {} | {:.4} |",
            s.server,
            s.rps,
            s.rps / rps(&c).max(1e-9),
            s.rps / rps(&peer).max(1e-9),
            s.p50_ms,
            s.p99_ms,
            s.server_cpu_us,
            opt(s.postgres_cpu_us, 0),
            s.requests,
            s.errors,
            mib(s.rss_before_kb),
            mib(s.rss_after_kb),
            opt(s.statements.map(per), 3),
            per(s.tuples_written)
        );
    }
    if rounds.len() > 1 {
        let _ = writeln!(out, "\nEach round (req/s):\n");
        let _ = writeln!(
            out,
            "| Round | portcullis | ceiling | peer | portcullis ÷ ceiling |\n|---:|---:|---:|---:|---:|"
        );
        for (i, round) in rounds.iter().enumerate() {
            let get = |name: &str| {
                round
                    .iter()
                    .find(|m| m.server == name)
                    .map_or(0.0, |m| m.load.rps)
            };
            let _ = writeln!(
                out,
                "| {} | {:.0} | {:.0} | {:.0} | {:.2}× |",
                i + 1,
                get("portcullis"),
                get("ceiling"),
                get("peer"),
                get("portcullis") / get("ceiling").max(1e-9)
            );
        }
    }
}

/// Section 4: sign-ins per second against the raw argon2id rate.
fn sign_in_section(out: &mut String, results: &Results) {
    let plan = &results.plan;
    let sign_in = &results.sign_in;
    let _ = writeln!(out, "\n## 4. Sign-in throughput vs raw argon2id\n");
    let _ = writeln!(
        out,
        "Raw rate: argon2id m=19456 KiB, t=2, p=1 verifications in this process through \
         `portcullis::auth::password::PasswordHasher`, kept busy for {} s before and after the \
         sign-in runs (the higher is used): with one worker per core ({}), **{:.1}/s** (rates {}; \
         mean {:.1} ms per hash); with Portcullis' default {} worker(s) (`--hash-workers`), \
         **{:.1}/s**. Then `POST /login` with correct passwords at {} connections for {} s \
         (Portcullis: one anonymous CSRF cookie + token pair reused; the peer has no CSRF).\n",
        plan.raw_hash_s,
        sign_in.raw_hash_workers,
        sign_in.raw_hash_rate,
        sign_in
            .raw_hash_rates
            .iter()
            .map(|r| format!("{r:.1}/s"))
            .collect::<Vec<_>>()
            .join(", "),
        sign_in.raw_hash_mean_ms,
        sign_in.server_hash_workers,
        sign_in.server_hash_rate,
        plan.login_connections,
        plan.signin_s
    );
    let _ = writeln!(
        out,
        "| Server | sign-ins/s | vs raw, all cores | vs raw, same workers | p50 ms | p99 ms | errors | RSS before → after (MiB) | statements/sign-in | rows written/sign-in |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---|---|---:|---:|");
    for m in &sign_in.servers {
        let rate = m.load.ok as f64 / m.load.duration_s.max(1e-9);
        let same = if m.server == "portcullis" {
            format!("{:.2}×", rate / sign_in.server_hash_rate.max(1e-9))
        } else {
            "(unbounded)".into()
        };
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.2}× | {same} | {:.1} | {:.1} | {} | {} → {} | {} | {:.2} |",
            m.server,
            rate,
            rate / sign_in.raw_hash_rate.max(1e-9),
            m.load.p50_ms,
            m.load.p99_ms,
            errors(&m.load),
            mib(m.rss_before_kb),
            mib(m.rss_after_kb),
            opt(m.db.statements.map(|s| m.per_request(s)), 2),
            m.per_request(m.db.tuples_written)
        );
    }
    let _ = writeln!(
        out,
        "| ceiling | n/a: never signs anyone in (no passwords by design) | | | | | | | | |"
    );
}
