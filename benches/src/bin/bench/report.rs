//! `BENCHMARKS.md` and the JSON of raw figures.

use std::{fmt::Write as _, path::Path};

use anyhow::Context;

use crate::{Measurement, Results, load::LoadResult};

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
        autogroup: autogroup(),
    }
}

/// `kernel.sched_autogroup_enabled`, or empty where the kernel has no such setting.
pub fn autogroup() -> String {
    std::fs::read_to_string("/proc/sys/kernel/sched_autogroup_enabled")
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

/// A signed-in page over all rounds of one server: medians of the rounds' figures, totals
/// of their counts.
pub struct PageSummary {
    pub server: String,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub server_cpu_us: f64,
    pub postgres_cpu_us: Option<f64>,
    pub requests: u64,
    pub errors: u64,
    pub rss_before_kb: u64,
    pub rss_after_kb: u64,
    pub statements: Option<u64>,
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

pub fn page_summary(rounds: &[Vec<Measurement>], server: &str) -> Option<PageSummary> {
    let rounds: Vec<&Measurement> = rounds
        .iter()
        .filter_map(|round| round.iter().find(|m| m.server == server))
        .collect();
    let first = rounds.first()?;
    let last = rounds.last()?;
    let mut db = crate::db::DbDelta::default();
    for m in &rounds {
        db.add(&m.db);
    }
    let postgres: Vec<f64> = rounds
        .iter()
        .filter_map(|m| m.postgres_cpu_us_per_request)
        .collect();
    Some(PageSummary {
        server: first.server.clone(),
        rps: median(rounds.iter().map(|m| m.load.rps).collect()),
        p50_ms: median(rounds.iter().map(|m| m.load.p50_ms).collect()),
        p99_ms: median(rounds.iter().map(|m| m.load.p99_ms).collect()),
        server_cpu_us: median(rounds.iter().map(|m| m.server_cpu_us_per_request).collect()),
        postgres_cpu_us: (!postgres.is_empty()).then(|| median(postgres)),
        requests: rounds.iter().map(|m| m.load.requests).sum(),
        errors: rounds.iter().map(|m| m.load.errors()).sum(),
        rss_before_kb: first.rss_before_kb,
        rss_after_kb: last.rss_after_kb,
        statements: db.statements,
        tuples_written: db.tuples_written,
    })
}

/// The figures the targets are judged on.
pub struct Verdicts {
    pub anonymous_vs_ceiling: Option<f64>,
    pub vs_ceiling: Option<f64>,
    pub api_vs_ceiling: Option<f64>,
    pub vs_peer: Option<f64>,
    pub statement_round_trips: Option<f64>,
    pub ping_round_trips: Option<f64>,
    pub statements_per_request: Option<f64>,
    pub writes_per_request: Option<f64>,
    pub write_tuples: u64,
    pub hot_requests: u64,
    /// Sign-ins per second against the raw rate of as many hashing workers.
    pub signin_ratio: Option<f64>,
    pub signin_rate: f64,
    pub flood_ratios: Vec<f64>,
    pub rss_growth: f64,
}

pub fn verdicts(results: &Results) -> Verdicts {
    let summary = |rounds: &[Vec<Measurement>], name| page_summary(rounds, name);
    let p = summary(&results.hot_rounds, "portcullis");
    let c = summary(&results.hot_rounds, "ceiling");
    let peer = summary(&results.hot_rounds, "peer");
    let ratio = |a: &Option<PageSummary>, b: &Option<PageSummary>| match (a, b) {
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
    let soak = &results.soak;
    Verdicts {
        anonymous_vs_ceiling: ratio(
            &summary(&results.anonymous_rounds, "portcullis"),
            &summary(&results.anonymous_rounds, "ceiling"),
        ),
        vs_ceiling: ratio(&p, &c),
        api_vs_ceiling: ratio(
            &summary(&results.api_rounds, "portcullis"),
            &summary(&results.api_rounds, "ceiling"),
        ),
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
        signin_ratio: (results.sign_in.server_hash_rate > 0.0)
            .then(|| signin_rate / results.sign_in.server_hash_rate),
        signin_rate,
        flood_ratios: crate::flood::ratios(results, "portcullis"),
        rss_growth: if soak.rss_start_kb > 0 {
            (soak.rss_end_kb as f64 - soak.rss_start_kb as f64) / soak.rss_start_kb as f64
        } else {
            0.0
        },
    }
}

pub fn mib(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

pub fn opt(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "n/a".into(), |v| format!("{v:.digits$}"))
}

pub fn errors(load: &LoadResult) -> String {
    let mut text = load.errors().to_string();
    if !load.unexpected_statuses.is_empty() {
        let _ = write!(text, " ({})", load.unexpected_statuses);
    }
    text
}

fn met(ok: bool) -> &'static str {
    if ok { "**met**" } else { "**missed**" }
}

/// A req/s goal: Portcullis' median round against `other`'s, over `rounds`.
fn rps_target(
    out: &mut String,
    name: &str,
    min: f64,
    ratio: Option<f64>,
    rounds: &[Vec<Measurement>],
    other: &str,
) {
    let rps = |server| page_summary(rounds, server).map_or(0.0, |s| s.rps);
    target(
        out,
        name,
        &format!("≥ {min:.2}×"),
        ratio,
        |x| x >= min,
        format!(
            "{}× ({:.0} vs {:.0})",
            opt(ratio, 2),
            rps("portcullis"),
            rps(other)
        ),
    );
}

fn target(
    out: &mut String,
    name: &str,
    goal: &str,
    value: Option<f64>,
    ok: impl Fn(f64) -> bool,
    shown: String,
) {
    let verdict = match value {
        Some(x) if ok(x) => met(true),
        Some(_) => met(false),
        None => "not measured",
    };
    let _ = writeln!(out, "| {name} | {goal} | {shown} | {verdict} |");
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
    let autogroup = match m.autogroup.as_str() {
        "0" => Some("off (`kernel.sched_autogroup_enabled = 0`, as docs/DEPLOY.md recommends)"),
        "1" => Some(
            "**on**: each PostgreSQL backend is a scheduling group of its own, and scenario 5's \
             tail shows it (benches/ANALYSIS.md, \"Autogroup\")",
        ),
        _ => None,
    };
    if let Some(autogroup) = autogroup {
        let _ = writeln!(out, "| Autogroup scheduling | {autogroup} |");
    }
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
        "| Load | {}, one thread per load, loopback; {} connections for page scenarios, {} for sign-in throughput, {} for the flood |",
        results.load_generator,
        plan.page_connections,
        plan.login_connections,
        plan.flood_connections
    );
    let _ = writeln!(
        out,
        "| Sessions | {} signed-in sessions per server over {} member users, cookies rotated per request |",
        plan.sessions, plan.users
    );
    if plan.residents > 0 {
        let _ = writeln!(
            out,
            "| Tables | each database also holds {} accounts with {} live sessions that no scenario uses, and is analysed before the first measurement (a deployment's table sizes, so that PostgreSQL plans each server's lookup as it would there) |",
            plan.residents, plan.resident_sessions
        );
    }

    let _ = writeln!(out, "\n## Targets\n");
    let _ = writeln!(
        out,
        "| Target | Goal | Measured | Verdict |\n|---|---|---|---|"
    );
    rps_target(
        &mut out,
        "Anonymous `GET /account` (303 to sign-in) vs ceiling (req/s)",
        0.8,
        v.anonymous_vs_ceiling,
        &results.anonymous_rounds,
        "ceiling",
    );
    rps_target(
        &mut out,
        "`GET /account` vs ceiling (same page, req/s)",
        0.9,
        v.vs_ceiling,
        &results.hot_rounds,
        "ceiling",
    );
    rps_target(
        &mut out,
        "`GET /api/me` vs ceiling (req/s)",
        0.85,
        v.api_vs_ceiling,
        &results.api_rounds,
        "ceiling",
    );
    rps_target(
        &mut out,
        "`GET /account` vs peer (req/s)",
        1.2,
        v.vs_peer,
        &results.hot_rounds,
        "peer",
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
        "Sign-in rate vs raw argon2id on as many workers",
        "≥ 0.90×",
        v.signin_ratio,
        |x| x >= 0.9,
        format!(
            "{}× ({:.1} vs {:.1} per s on {} worker(s); {:.2}× the {:.1}/s of all {} cores)",
            opt(v.signin_ratio, 2),
            v.signin_rate,
            results.sign_in.server_hash_rate,
            results.sign_in.server_hash_workers,
            v.signin_rate / results.sign_in.raw_hash_rate.max(1e-9),
            results.sign_in.raw_hash_rate,
            results.sign_in.raw_hash_workers
        ),
    );
    let worst = v
        .flood_ratios
        .iter()
        .copied()
        .fold(None, |w: Option<f64>, x| Some(w.map_or(x, |w| w.max(x))));
    target(
        &mut out,
        "Hot-path p99 under a sign-in flood vs alone, every round",
        "< 2×",
        worst,
        |x| x < 2.0,
        format!(
            "{} (rounds; the last with busy neighbours); sign-ins during the flood: {} per s, {} of the raw rate on all cores",
            v.flood_ratios
                .iter()
                .map(|r| format!("{r:.2}×"))
                .collect::<Vec<_>>()
                .join(", "),
            opt(crate::flood::sign_in_rate(results), 1),
            opt(
                crate::flood::sign_in_rate(results)
                    .map(|r| r / results.sign_in.raw_hash_rate.max(1e-9)),
                2
            ) + "×"
        ),
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

    crate::sections::all(&mut out, results);
    if let Some(analysis) = analysis {
        let _ = writeln!(out, "\n{}", analysis.trim_end());
    }
    out
}

/// Short text for the terminal.
pub fn summary(results: &Results) -> String {
    let v = verdicts(results);
    format!(
        "\nanonymous /account: {}x ceiling; /account: {}x ceiling, {}x peer; /api/me: {}x ceiling; statement round trips/req {}, pings/req {}, rows written/req {}\n\
         sign-in: {}x raw argon2id on as many workers; p99 under flood: {} x alone; soak RSS growth {:+.1}%\n",
        opt(v.anonymous_vs_ceiling, 2),
        opt(v.vs_ceiling, 2),
        opt(v.vs_peer, 2),
        opt(v.api_vs_ceiling, 2),
        opt(v.statement_round_trips, 3),
        opt(v.ping_round_trips, 3),
        opt(v.writes_per_request, 5),
        opt(v.signin_ratio, 2),
        v.flood_ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join("/"),
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
