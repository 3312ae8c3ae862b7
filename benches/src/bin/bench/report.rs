//! `BENCHMARKS.md` and the JSON of raw figures.

use std::{fmt::Write as _, path::Path};

use anyhow::Context;

use crate::{Measurement, Results, load::LoadResult, order};

pub fn now() -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_default()
}

pub fn commit(repo: &Path) -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let Some(head) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown".into();
    };
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{head} (with uncommitted changes)")
    } else {
        head
    }
}

pub fn machine() -> crate::Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, v)| v.trim())
        })
        .unwrap_or("unknown CPU")
        .to_owned();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: f64 = meminfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:")?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0);
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("PRETTY_NAME=")
                .map(|v| v.trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    crate::Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_gib: mem_kb / 1024.0 / 1024.0,
        os,
        kernel,
        rustc,
    }
}

/// The hot path of one server over all rounds: medians of the rounds' figures, totals of
/// their counts.
pub struct HotSummary {
    pub server: String,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests: u64,
    pub errors: u64,
    pub rss_before_kb: u64,
    pub rss_after_kb: u64,
    pub statements: Option<u64>,
    pub write_statements: Option<u64>,
    pub tuples_written: u64,
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

pub fn hot_summary(results: &Results, server: &str) -> Option<HotSummary> {
    let rounds: Vec<&Measurement> = results
        .hot_rounds
        .iter()
        .filter_map(|round| round.iter().find(|m| m.server == server))
        .collect();
    let first = rounds.first()?;
    let last = rounds.last()?;
    let mut db = crate::db::DbDelta::default();
    for m in &rounds {
        db.add(&m.db);
    }
    Some(HotSummary {
        server: first.server.clone(),
        rps: median(rounds.iter().map(|m| m.load.rps).collect()),
        p50_ms: median(rounds.iter().map(|m| m.load.p50_ms).collect()),
        p99_ms: median(rounds.iter().map(|m| m.load.p99_ms).collect()),
        requests: rounds.iter().map(|m| m.load.requests).sum(),
        errors: rounds.iter().map(|m| m.load.errors()).sum(),
        rss_before_kb: first.rss_before_kb,
        rss_after_kb: last.rss_after_kb,
        statements: db.statements,
        write_statements: db.write_statements,
        tuples_written: db.tuples_written,
    })
}

/// The figures the targets are judged on.
pub struct Verdicts {
    pub vs_ceiling: Option<f64>,
    pub vs_peer: Option<f64>,
    pub statement_round_trips: Option<f64>,
    pub ping_round_trips: Option<f64>,
    pub statements_per_request: Option<f64>,
    pub writes_per_request: Option<f64>,
    pub write_tuples: u64,
    pub hot_requests: u64,
    pub signin_ratio: Option<f64>,
    pub signin_rate: f64,
    pub flood_ratio: Option<f64>,
    pub rss_growth: f64,
}

pub fn verdicts(results: &Results) -> Verdicts {
    let p = hot_summary(results, "portcullis");
    let c = hot_summary(results, "ceiling");
    let peer = hot_summary(results, "peer");
    let ratio = |a: &Option<HotSummary>, b: &Option<HotSummary>| match (a, b) {
        (Some(a), Some(b)) if b.rps > 0.0 => Some(a.rps / b.rps),
        _ => None,
    };
    let census = results
        .census
        .iter()
        .find(|c| c.server == "portcullis" && c.scenario == "hot");
    let per = |n: u64, d: u64| (d > 0).then(|| n as f64 / d as f64);
    let signin = results
        .sign_in
        .servers
        .iter()
        .find(|m| m.server == "portcullis");
    let signin_rate = signin.map_or(0.0, |m| m.load.ok as f64 / m.load.duration_s.max(1e-9));
    let flood = results.isolation.iter().find(|i| i.server == "portcullis");
    let soak = &results.soak;
    Verdicts {
        vs_ceiling: ratio(&p, &c),
        vs_peer: ratio(&p, &peer),
        statement_round_trips: census
            .and_then(|c| per(c.round_trips.statement_round_trips, c.requests)),
        ping_round_trips: census.and_then(|c| per(c.round_trips.ping_round_trips, c.requests)),
        statements_per_request: p
            .as_ref()
            .and_then(|p| p.statements.and_then(|s| per(s, p.requests))),
        writes_per_request: p.as_ref().and_then(|p| per(p.tuples_written, p.requests)),
        write_tuples: p.as_ref().map_or(0, |p| p.tuples_written),
        hot_requests: p.as_ref().map_or(0, |p| p.requests),
        signin_ratio: (results.sign_in.raw_hash_rate > 0.0)
            .then(|| signin_rate / results.sign_in.raw_hash_rate),
        signin_rate,
        flood_ratio: flood.map(|f| f.flooded.p99_ms / f.alone.p99_ms.max(1e-9)),
        rss_growth: if soak.rss_start_kb > 0 {
            (soak.rss_end_kb as f64 - soak.rss_start_kb as f64) / soak.rss_start_kb as f64
        } else {
            0.0
        },
    }
}

fn mib(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

fn opt(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "n/a".into(), |v| format!("{v:.digits$}"))
}

fn errors(load: &LoadResult) -> String {
    let mut text = load.errors().to_string();
    if !load.unexpected_statuses.is_empty() {
        let _ = write!(text, " ({})", load.unexpected_statuses);
    }
    text
}

fn met(ok: bool) -> &'static str {
    if ok { "**met**" } else { "**missed**" }
}

const SERVERS: [(&str, &str); 3] = [
    (
        "portcullis",
        "this repository's release build (`portcullis serve`), default settings",
    ),
    (
        "ceiling",
        "`benches/src/bin/ceiling.rs`: bare axum, one query (token joined to user) keyed by the cookie, no sessions library, no hashing",
    ),
    (
        "peer",
        "`benches/src/bin/peer.rs`: axum-login 0.17 + tower-sessions 0.14 + tower-sessions-sqlx-store 0.15 (`PostgresStore`), axum-login's example setup adapted to PostgreSQL",
    ),
];

fn measurement_table(out: &mut String, rows: &[Measurement], absent: &[(&str, &str)]) {
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

fn queries(out: &mut String, title: &str, m: &crate::db::DbDelta, requests: u64) {
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

pub fn markdown(results: &Results, analysis: Option<&str>) -> String {
    let v = verdicts(results);
    let mut out = String::new();
    let m = &results.machine;
    let plan = &results.plan;
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Generated by `{}` on {} (commit {}, {} mode, {:.0} s wall time). The command builds \
         everything with the `{}` profile, starts its own PostgreSQL, and runs the three servers \
         below side by side under the same load; see README, \"Benchmarks\".\n",
        results.command, results.date, results.commit, plan.mode, results.wall_s, results.build
    );
    if results.build != "release" {
        let _ = writeln!(
            out,
            "**Not a release build: this run proves the harness works; its figures mean \
             nothing.**\n"
        );
    }
    let _ = writeln!(
        out,
        "Absolute numbers on a shared two-core machine are noise: **the ratios between servers \
         measured in the same run are the result.** Raw figures: `benches/results/latest.json`.\n"
    );
    let _ = writeln!(out, "## Machine\n");
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(out, "| CPU | {} × {} cores |", m.cpu, m.cores);
    let _ = writeln!(out, "| Memory | {:.1} GiB |", m.memory_gib);
    let _ = writeln!(out, "| OS | {} (kernel {}) |", m.os, m.kernel);
    let _ = writeln!(out, "| Rust | {} |", m.rustc);
    if results.load_average.len() == 2 {
        let _ = writeln!(
            out,
            "| Load average (1/5/15 min) | {} at the start, {} at the end (other work shares this machine) |",
            results.load_average[0], results.load_average[1]
        );
    }
    let _ = writeln!(out, "| Database | {} |", results.database);
    let _ = writeln!(
        out,
        "| Load | {}, one thread, loopback; {} connections for page scenarios, {} for sign-ins |",
        results.load_generator, plan.page_connections, plan.login_connections
    );
    let _ = writeln!(
        out,
        "| Sessions | {} signed-in sessions per server over {} member users, cookies rotated per request |",
        plan.sessions, plan.users
    );

    let _ = writeln!(out, "\n## Targets\n");
    let _ = writeln!(
        out,
        "| Target | Goal | Measured | Verdict |\n|---|---|---|---|"
    );
    let target = |out: &mut String,
                  name: &str,
                  goal: &str,
                  value: Option<f64>,
                  ok: fn(f64) -> bool,
                  shown: String| {
        let verdict = match value {
            Some(x) if ok(x) => met(true).to_owned(),
            Some(_) => met(false).to_owned(),
            None => "not measured".to_owned(),
        };
        let _ = writeln!(out, "| {name} | {goal} | {shown} | {verdict} |");
    };
    let p = hot_summary(results, "portcullis");
    let c = hot_summary(results, "ceiling");
    let peer = hot_summary(results, "peer");
    let rps = |s: &Option<HotSummary>| s.as_ref().map_or(0.0, |s| s.rps);
    target(
        &mut out,
        "Hot path vs ceiling (req/s)",
        "≥ 0.90×",
        v.vs_ceiling,
        |x| x >= 0.9,
        format!(
            "{}× ({:.0} vs {:.0})",
            opt(v.vs_ceiling, 2),
            rps(&p),
            rps(&c)
        ),
    );
    target(
        &mut out,
        "Hot path vs peer (req/s)",
        "≥ 1.20×",
        v.vs_peer,
        |x| x >= 1.2,
        format!(
            "{}× ({:.0} vs {:.0})",
            opt(v.vs_peer, 2),
            rps(&p),
            rps(&peer)
        ),
    );
    target(
        &mut out,
        "DB round trips per authenticated GET",
        "≤ 1",
        v.statement_round_trips,
        |x| x <= 1.005,
        format!(
            "{} statement round trip(s), {} statements (pg_stat_statements); plus {} sqlx pool ping(s) after the response",
            opt(v.statement_round_trips, 3),
            opt(v.statements_per_request, 3),
            opt(v.ping_round_trips, 2)
        ),
    );
    target(
        &mut out,
        "DB writes per authenticated GET",
        "0 at steady state",
        v.writes_per_request,
        |x| x < 0.005,
        format!(
            "{} rows/request ({} rows in {} requests: the idle refresh, at most once a minute per session)",
            opt(v.writes_per_request, 5),
            v.write_tuples,
            v.hot_requests
        ),
    );
    target(
        &mut out,
        "Sign-in rate vs raw argon2id rate",
        "≥ 0.90×",
        v.signin_ratio,
        |x| x >= 0.9,
        format!(
            "{}× ({:.1} vs {:.1} per s)",
            opt(v.signin_ratio, 2),
            v.signin_rate,
            results.sign_in.raw_hash_rate
        ),
    );
    target(
        &mut out,
        "Hot-path p99 under a sign-in flood vs alone",
        "< 2×",
        v.flood_ratio,
        |x| x < 2.0,
        format!("{}×", opt(v.flood_ratio, 2)),
    );
    target(
        &mut out,
        "RSS growth across the soak",
        "< 10%",
        Some(v.rss_growth),
        |x| x < 0.10,
        format!(
            "{:+.1}% ({} → {} MiB over {} requests)",
            v.rss_growth * 100.0,
            mib(results.soak.rss_start_kb),
            mib(results.soak.rss_end_kb),
            results.soak.load.requests
        ),
    );

    let _ = writeln!(out, "\n## The servers\n");
    for (name, what) in SERVERS {
        let bytes = results.page_bytes.iter().find(|b| b.server == name);
        let _ = writeln!(
            out,
            "- **{name}**: {what}. `/account` page: {} bytes; 403 page: {} bytes.",
            bytes.map_or(0, |b| b.account),
            bytes.map_or(0, |b| b.forbidden)
        );
    }
    let _ = writeln!(
        out,
        "\nAll three use the same PostgreSQL server (one database each, so statistics are \
         per server) and are measured one at a time, in rotating order for the hot path."
    );

    let _ = writeln!(
        out,
        "\n## 1. Anonymous GET of a protected page (the 401 case: redirect to sign-in)\n"
    );
    let _ = writeln!(
        out,
        "`GET /account` without a cookie, {} s per server. Success = any 3xx to the sign-in page \
         (Portcullis and the ceiling answer 303, axum-login 307).\n",
        plan.page_s
    );
    measurement_table(&mut out, &results.anonymous, &[]);

    let _ = writeln!(out, "\n## 2. Authenticated GET /account (the hot path)\n");
    let _ = writeln!(
        out,
        "{} round(s) of {} s per server; the table shows the median round (req/s, p50, p99) \
         and totals over all rounds.\n",
        plan.hot_rounds, plan.hot_s
    );
    let _ = writeln!(
        out,
        "| Server | req/s (median) | vs ceiling | vs peer | p50 ms | p99 ms | requests | errors | RSS before → after (MiB) | statements/req | write statements/req | rows written/req |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"
    );
    for s in [&p, &c, &peer].into_iter().flatten() {
        let per = |n: u64| n as f64 / s.requests.max(1) as f64;
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.2}× | {:.2}× | {:.2} | {:.2} | {} | {} | {} → {} | {} | {} | {:.4} |",
            s.server,
            s.rps,
            s.rps / rps(&c).max(1e-9),
            s.rps / rps(&peer).max(1e-9),
            s.p50_ms,
            s.p99_ms,
            s.requests,
            s.errors,
            mib(s.rss_before_kb),
            mib(s.rss_after_kb),
            opt(s.statements.map(per), 3),
            opt(s.write_statements.map(per), 4),
            per(s.tuples_written)
        );
    }
    if results.hot_rounds.len() > 1 {
        let _ = writeln!(out, "\nEach round (req/s):\n");
        let _ = writeln!(
            out,
            "| Round | portcullis | ceiling | peer |\n|---:|---:|---:|---:|"
        );
        for (i, round) in results.hot_rounds.iter().enumerate() {
            let get = |name: &str| {
                round
                    .iter()
                    .find(|m| m.server == name)
                    .map_or(0.0, |m| m.load.rps)
            };
            let _ = writeln!(
                out,
                "| {} | {:.0} | {:.0} | {:.0} |",
                i + 1,
                get("portcullis"),
                get("ceiling"),
                get("peer")
            );
        }
    }
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
            &mut out,
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
    measurement_table(&mut out, &results.forbidden, &[]);

    let _ = writeln!(out, "\n## 4. Sign-in throughput vs raw argon2id\n");
    let _ = writeln!(
        out,
        "Raw rate: argon2id m=19456 KiB, t=2, p=1 verifications in this process through \
         `portcullis::auth::password::PasswordHasher` with {} workers (one per core) kept busy for \
         {} s, before and after the sign-in runs (rates {}; the higher is used): **{:.1}/s** \
         (mean {:.1} ms per hash). Then `POST /login` with correct passwords at \
         {} connections for {} s (Portcullis: one anonymous CSRF cookie + token pair reused; the \
         peer has no CSRF).\n",
        results.sign_in.raw_hash_workers,
        plan.raw_hash_s,
        results
            .sign_in
            .raw_hash_rates
            .iter()
            .map(|r| format!("{r:.1}/s"))
            .collect::<Vec<_>>()
            .join(", "),
        results.sign_in.raw_hash_rate,
        results.sign_in.raw_hash_mean_ms,
        plan.login_connections,
        plan.signin_s
    );
    let _ = writeln!(
        out,
        "| Server | sign-ins/s | vs raw argon2id | p50 ms | p99 ms | errors | RSS before → after (MiB) | statements/sign-in | rows written/sign-in |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---|---|---:|---:|");
    for m in &results.sign_in.servers {
        let rate = m.load.ok as f64 / m.load.duration_s.max(1e-9);
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.2}× | {:.1} | {:.1} | {} | {} → {} | {} | {:.2} |",
            m.server,
            rate,
            rate / results.sign_in.raw_hash_rate.max(1e-9),
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
        "| ceiling | n/a: never signs anyone in (no passwords by design) | | | | | | | |"
    );

    let _ = writeln!(
        out,
        "\n## 5. Isolation: the hot path under a sign-in flood\n"
    );
    let _ = writeln!(
        out,
        "Scenario 2's load ({} connections, {} s) alone, then again while {} connections post \
         correct sign-ins as fast as they are answered (the flood starts 1.5 s earlier and ends \
         after).\n",
        plan.page_connections, plan.isolation_s, plan.login_connections
    );
    let _ = writeln!(
        out,
        "| Server | p99 alone ms | p99 under flood ms | ratio | req/s alone → under flood | p50 alone → under flood ms | flood sign-ins/s | flood errors | RSS after (MiB) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---|---|---:|---|---:|");
    for i in &results.isolation {
        let _ = writeln!(
            out,
            "| {} | {:.2} | {:.2} | {:.2}× | {:.0} → {:.0} | {:.2} → {:.2} | {:.1} | {} | {} |",
            i.server,
            i.alone.p99_ms,
            i.flooded.p99_ms,
            i.flooded.p99_ms / i.alone.p99_ms.max(1e-9),
            i.alone.rps,
            i.flooded.rps,
            i.alone.p50_ms,
            i.flooded.p50_ms,
            i.flood.ok as f64 / i.flood.duration_s.max(1e-9),
            errors(&i.flood),
            mib(i.rss_after_kb)
        );
    }
    let _ = writeln!(out, "| ceiling | n/a: no sign-in | | | | | | | |");

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
        v.rss_growth * 100.0
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
         - **RSS**: `VmRSS` of the server process from `/proc/<pid>/status`.\n\
         - Raw figures, per-query breakdowns and every round: `benches/results/latest.json`."
    );
    if let Some(analysis) = analysis {
        let _ = writeln!(out, "\n{}", analysis.trim_end());
    }
    out
}

/// Short text for the terminal.
pub fn summary(results: &Results) -> String {
    let v = verdicts(results);
    format!(
        "\nhot path: {}x ceiling, {}x peer; statement round trips/req {}, pings/req {}, rows written/req {}\n\
         sign-in: {}x raw argon2id; p99 under flood: {}x alone; soak RSS growth {:+.1}%\n",
        opt(v.vs_ceiling, 2),
        opt(v.vs_peer, 2),
        opt(v.statement_round_trips, 3),
        opt(v.ping_round_trips, 3),
        opt(v.writes_per_request, 5),
        opt(v.signin_ratio, 2),
        opt(v.flood_ratio, 2),
        v.rss_growth * 100.0
    )
}

/// Writes the Markdown report, with the hand-written analysis of the latest full run
/// (`benches/ANALYSIS.md`) appended to the generated tables.
pub fn write_markdown(results: &Results, markdown_path: &Path) -> anyhow::Result<()> {
    let analysis = std::fs::read_to_string(Path::new(crate::REPO).join("benches/ANALYSIS.md")).ok();
    if let Some(dir) = markdown_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(markdown_path, markdown(results, analysis.as_deref()))
        .with_context(|| format!("writing {}", markdown_path.display()))
}

pub fn write(results: &Results, markdown_path: &Path, json_path: &Path) -> anyhow::Result<()> {
    write_markdown(results, markdown_path)?;
    if let Some(dir) = json_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(json_path, serde_json::to_string_pretty(results)? + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    Ok(())
}
