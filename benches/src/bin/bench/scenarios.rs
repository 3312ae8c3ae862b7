//! The measurements: one load against one server with its costs around it, the flood
//! rounds, and the raw argon2id rate.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use portcullis::auth::password::PasswordHasher;
use serde::{Deserialize, Serialize};

use crate::{
    Measurement, Plan, Subject,
    db::Db,
    load::{Load, LoadResult, Request},
    log,
    servers::Server,
    sessions,
    stages::{self, Scrape, StageFigures},
};

/// `GET path` with each signed-in session's cookie in turn.
pub fn page_load(work: &Path, s: &Subject, path: &str) -> anyhow::Result<Load> {
    let requests: Vec<Request> = s
        .cookies
        .iter()
        .map(|c| Request::get(path, c.clone()))
        .collect();
    let name = path.trim_start_matches('/').replace('/', "-");
    Load::prepare(
        work,
        &format!("{}-{name}", s.server.name),
        &s.server.base,
        &requests,
        "200",
    )
}

/// `GET /account` without a cookie: the redirect to sign-in (axum-login answers 307).
pub fn anonymous_load(work: &Path, s: &Subject) -> anyhow::Result<Load> {
    Load::prepare(
        work,
        &format!("{}-anonymous", s.server.name),
        &s.server.base,
        &[Request::get("/account", "")],
        "3xx",
    )
}

/// One wrk run against one server, with its memory, CPU and database activity around it.
pub async fn measure(
    db: &Db,
    s: &Subject,
    load: &Load,
    connections: u32,
    seconds: u64,
) -> anyhow::Result<Measurement> {
    let rss_before_kb = s.server.rss_kb();
    let mark = db.mark(s.db_name, &s.pool).await?;
    let cpu_before = s.server.cpu_us();
    let pg_before = db.postgres_cpu_us();
    let result = load.run(connections, Duration::from_secs(seconds)).await?;
    let cpu = s.server.cpu_us().saturating_sub(cpu_before);
    let pg = pg_before
        .zip(db.postgres_cpu_us())
        .map(|(before, after)| after.saturating_sub(before));
    let rss_after_kb = s.server.rss_kb();
    let delta = db.delta(s.db_name, &s.pool, mark).await?;
    let requests = result.requests.max(1) as f64;
    let server_cpu_us_per_request = cpu as f64 / requests;
    let postgres_cpu_us_per_request = pg.map(|pg| pg as f64 / requests);
    log(format!(
        "  {:<10} {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>7.2} ms  CPU µs/req: server {:>5.0}, \
         PostgreSQL {}  errors {}{}",
        s.server.name,
        result.rps,
        result.p50_ms,
        result.p99_ms,
        server_cpu_us_per_request,
        postgres_cpu_us_per_request.map_or_else(|| "n/a".into(), |us| format!("{us:.0}")),
        result.errors(),
        if result.unexpected > 0 {
            format!(" ({})", result.unexpected_statuses)
        } else {
            String::new()
        }
    ));
    Ok(Measurement {
        server: s.server.name.into(),
        load: result,
        rss_before_kb,
        rss_after_kb,
        server_cpu_us_per_request,
        postgres_cpu_us_per_request,
        db: delta,
    })
}

/// `perf record` of the server for `seconds` (a CPU profile of its hot path).
pub fn perf_record(
    work: &Path,
    s: &Subject,
    seconds: u64,
) -> anyhow::Result<tokio::process::Child> {
    let output = work.join(format!("perf-{}.data", s.server.name));
    tokio::process::Command::new("perf")
        .args(["record", "-F", "999", "-g", "-p"])
        .arg(s.server.pid.to_string())
        .arg("-o")
        .arg(&output)
        .args(["--", "sleep"])
        .arg(seconds.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting perf (is it installed?)")
}

/// One round of the flood scenario: the page load alone, then under the flood.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FloodRound {
    /// Whether busy processes (`Plan::neighbours`) shared the machine during the round.
    #[serde(default)]
    pub neighbours: u32,
    pub alone: LoadResult,
    pub flooded: LoadResult,
    pub flood: LoadResult,
    /// Server CPU during the flooded page load, µs per page request (sign-ins included).
    #[serde(default)]
    pub server_cpu_us_per_page: f64,
    /// Portcullis' own stage timings during the flooded page load (empty for the peer).
    #[serde(default)]
    pub stages: Vec<StageFigures>,
}

impl FloodRound {
    pub fn ratio(&self) -> f64 {
        self.flooded.p99_ms / self.alone.p99_ms.max(1e-9)
    }

    /// Successful sign-ins per second during the flood.
    pub fn sign_ins_per_s(&self) -> f64 {
        self.flood.ok as f64 / self.flood.duration_s.max(1e-9)
    }
}

/// Processes that keep cores busy beside the benchmark (a build, another service): each
/// its own session, so the kernel's autogroup scheduling treats it as another program.
pub struct Neighbours(Vec<tokio::process::Child>);

impl Neighbours {
    pub fn start(count: u32) -> anyhow::Result<Neighbours> {
        let mut children = Vec::new();
        for _ in 0..count {
            let mut command = tokio::process::Command::new("sh");
            command
                .args(["-c", "while :; do :; done"])
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true);
            // SAFETY: setsid and prctl are async-signal-safe and touch no shared state;
            // they run in the child between fork and exec.
            unsafe {
                command.pre_exec(|| {
                    nix::unistd::setsid().map_err(std::io::Error::from)?;
                    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                        .map_err(std::io::Error::from)
                });
            }
            children.push(command.spawn().context("starting a busy neighbour")?);
        }
        Ok(Neighbours(children))
    }

    pub async fn stop(mut self) {
        for child in &mut self.0 {
            let _ = child.kill().await;
        }
    }
}

/// The page load alone, then again while `flood` posts sign-ins as fast as they are
/// answered (starting earlier and ending later, so the whole measured slice is under
/// flood), alternately `plan.isolation_slices` times; each condition's latencies pooled.
/// With `neighbours`, that many busy processes run throughout the round.
pub async fn flood_round(
    work: &Path,
    s: &Subject,
    flood: &Load,
    plan: &Plan,
    neighbours: u32,
) -> anyhow::Result<FloodRound> {
    let hot = page_load(work, s, "/account")?;
    let slice = Duration::from_secs(plan.isolation_s);
    let head_start = Duration::from_millis(1500);
    let busy = Neighbours::start(neighbours)?;
    if neighbours > 0 {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let ours = s.server.name == "portcullis";
    let scrape = || async {
        if ours {
            stages::scrape(&s.server.base).await.ok()
        } else {
            None
        }
    };
    let (mut alone, mut flooded, mut floods) = (Vec::new(), Vec::new(), Vec::new());
    let mut stage_totals = Scrape::default();
    let mut cpu = 0;
    let measured = async {
        for _ in 0..plan.isolation_slices {
            alone.push(hot.run(plan.page_connections, slice).await?);
            let flood_run = flood.run(
                plan.flood_connections,
                head_start + slice + Duration::from_secs(1),
            );
            let hot_run = async {
                tokio::time::sleep(head_start).await;
                let before = scrape().await;
                let cpu_before = s.server.cpu_us();
                let result = hot.run(plan.page_connections, slice).await;
                let used = s.server.cpu_us().saturating_sub(cpu_before);
                let after = scrape().await;
                (result, used, before.zip(after))
            };
            let (flood_result, (result, used, scrapes)) = tokio::join!(flood_run, hot_run);
            floods.push(flood_result?);
            flooded.push(result?);
            cpu += used;
            if let Some((before, after)) = scrapes {
                stage_totals.add(&after.since(&before));
            }
        }
        anyhow::Ok(())
    }
    .await;
    busy.stop().await;
    measured?;
    let flooded = LoadResult::pooled(&flooded);
    let round = FloodRound {
        neighbours,
        server_cpu_us_per_page: cpu as f64 / flooded.requests.max(1) as f64,
        stages: if ours {
            stage_totals.figures()
        } else {
            Vec::new()
        },
        alone: LoadResult::pooled(&alone),
        flooded,
        flood: LoadResult::pooled(&floods),
    };
    log(format!(
        "  {:<10} p99 alone {:.2} ms, under flood {:.2} ms ({:.1}x); p50 {:.2} -> {:.2} ms; \
         flood {:.1} sign-ins/s, {} errors{}",
        s.server.name,
        round.alone.p99_ms,
        round.flooded.p99_ms,
        round.ratio(),
        round.alone.p50_ms,
        round.flooded.p50_ms,
        round.sign_ins_per_s(),
        round.flood.errors(),
        if neighbours > 0 {
            format!(" ({neighbours} busy neighbours)")
        } else {
            String::new()
        }
    ));
    for stage in &round.stages {
        log(format!(
            "      {:<42} {:>6} × mean {:>8.3} ms, p99 ≤ {:>7.1} ms",
            stage.stage, stage.count, stage.mean_ms, stage.p99_ms_at_most
        ));
    }
    Ok(round)
}

/// The rate of argon2id verifications of the same parameters, in this process, on the
/// hasher's workers, kept busy by twice as many concurrent callers: (rate, workers, mean
/// ms per hash).
pub async fn raw_hash_rate(
    hasher: &PasswordHasher,
    seconds: u64,
) -> anyhow::Result<(f64, usize, f64)> {
    let workers = hasher.workers();
    let stored = hasher.hash(portcullis_bench::PASSWORD.to_owned()).await?;
    let (before, mean_before) = hasher.stats();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..workers * 2 {
        let hasher = hasher.clone();
        let stored = stored.clone();
        let done = Arc::clone(&done);
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                if hasher
                    .verify(portcullis_bench::PASSWORD.to_owned(), Some(stored.clone()))
                    .await
                    .is_ok()
                {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (after, mean_after) = hasher.stats();
    let count = done.load(Ordering::Relaxed);
    // The mean of this run's hashes alone, from the running totals.
    let total_ms = |n: u64, mean: Duration| n as f64 * mean.as_secs_f64() * 1000.0;
    let mean = (total_ms(after, mean_after) - total_ms(before, mean_before))
        / (after - before).max(1) as f64;
    log(format!(
        "  raw argon2id: {count} verifications in {elapsed:.1} s on {workers} worker(s) \
         ({:.1}/s, mean {mean:.1} ms)",
        count as f64 / elapsed,
    ));
    Ok((count as f64 / elapsed, workers, mean))
}

/// Sign-ins with correct passwords, rotating over the flood's own users (never the page
/// load's: their session lists, which the account page shows, must not grow meanwhile).
pub async fn portcullis_login_load(
    work: &Path,
    server: &Server,
    plan: &Plan,
) -> anyhow::Result<Load> {
    let (cookie, token) = sessions::portcullis_csrf_pair(&server.base).await?;
    let requests: Vec<Request> = (0..plan.flood_users)
        .map(|k| Request {
            method: "POST",
            path: "/login".into(),
            cookie: format!("portcullis_csrf={cookie}"),
            body: format!(
                "username={}&password={}&csrf={token}&next=",
                sessions::flooder(k),
                sessions::form_encode(portcullis_bench::PASSWORD)
            ),
        })
        .collect();
    Load::prepare(work, "portcullis-login", &server.base, &requests, "3xx")
}

pub fn peer_login_load(work: &Path, server: &Server, plan: &Plan) -> anyhow::Result<Load> {
    let requests: Vec<Request> = (0..plan.flood_users)
        .map(|k| Request {
            method: "POST",
            path: "/login".into(),
            cookie: String::new(),
            body: format!(
                "username={}&password={}&next=",
                sessions::flooder(k),
                sessions::form_encode(portcullis_bench::PASSWORD)
            ),
        })
        .collect();
    Load::prepare(work, "peer-login", &server.base, &requests, "3xx")
}
