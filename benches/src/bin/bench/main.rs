//! The benchmark driver: `benches/run` (or `cargo run --release --manifest-path
//! benches/Cargo.toml --bin bench`) builds everything, then this starts PostgreSQL, seeds
//! users, runs Portcullis, the ceiling and the peer side by side under wrk on loopback, and
//! writes `BENCHMARKS.md` and a JSON file of raw figures.
//!
//! Absolute numbers on a shared two-core machine are noise; the ratios between servers
//! measured in the same run, against the same database and load, are the result.

mod db;
mod load;
mod proxy;
mod report;
mod servers;
mod sessions;

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::Parser;
use portcullis::{
    accounts::admin,
    audit::Actor,
    auth::{Role, password::PasswordHasher},
};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::{
    db::{Db, DbDelta},
    load::{Load, LoadResult, Request},
    servers::{Server, free_port},
};

/// The repository root (this package lives in `benches/`).
const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

#[derive(Parser, Debug)]
#[command(about = "Portcullis vs a minimal ceiling vs axum-login: side-by-side ratios")]
struct Args {
    /// Short runs (about a minute, for CI): proves the harness works; figures are rough.
    #[arg(long)]
    quick: bool,
    /// Directory holding the `portcullis`, `ceiling` and `peer` release binaries
    /// (default: the directory of this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Where to write the Markdown report (default: BENCHMARKS.md at the repository root
    /// for a full run, target/bench/BENCHMARKS.quick.md for --quick).
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Where to write the raw figures (default: benches/results/latest.json, or
    /// target/bench/quick.json for --quick).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Scratch directory: the private cluster, server logs, wrk request files.
    #[arg(long, default_value = "/tmp/portcullis-bench")]
    work_dir: PathBuf,
    /// Use this PostgreSQL server instead of a private cluster (needs CREATE DATABASE;
    /// statements are counted when it preloads pg_stat_statements).
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Also record a `perf` profile of each server during its first hot-path round
    /// (written to the work directory as perf-<server>.data).
    #[arg(long)]
    perf: bool,
    /// Only re-render the Markdown report from this JSON of an earlier run (e.g. after
    /// editing benches/ANALYSIS.md); runs nothing.
    #[arg(long, value_name = "JSON")]
    render: Option<PathBuf>,
    /// The command line as typed, for the report (benches/run sets it).
    #[arg(long, env = "BENCH_COMMAND", hide = true)]
    command: Option<String>,
}

/// Durations and sizes of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub mode: String,
    pub warmup_s: u64,
    pub page_s: u64,
    pub hot_s: u64,
    pub hot_rounds: usize,
    pub signin_s: u64,
    pub raw_hash_s: u64,
    pub isolation_s: u64,
    pub census_s: u64,
    pub soak_requests: u64,
    pub soak_max_s: u64,
    /// Idle timeout of the soak server: short, so sessions end and get swept meanwhile.
    pub soak_idle_s: u64,
    pub soak_sweep_s: u64,
    pub soak_churn_ms: u64,
    pub page_connections: u32,
    pub login_connections: u32,
    pub census_connections: u32,
    pub sessions: usize,
    pub users: usize,
}

impl Plan {
    fn full() -> Plan {
        Plan {
            mode: "full".into(),
            warmup_s: 3,
            page_s: 6,
            hot_s: 8,
            hot_rounds: 3,
            signin_s: 8,
            raw_hash_s: 5,
            isolation_s: 8,
            census_s: 2,
            soak_requests: 1_000_000,
            soak_max_s: 300,
            soak_idle_s: 20,
            soak_sweep_s: 5,
            soak_churn_ms: 500,
            page_connections: 16,
            login_connections: 8,
            census_connections: 4,
            sessions: 64,
            users: 16,
        }
    }

    fn quick() -> Plan {
        Plan {
            mode: "quick".into(),
            warmup_s: 1,
            page_s: 2,
            hot_s: 3,
            hot_rounds: 1,
            signin_s: 3,
            raw_hash_s: 2,
            isolation_s: 3,
            census_s: 1,
            soak_requests: 50_000,
            soak_max_s: 30,
            soak_idle_s: 3,
            soak_sweep_s: 1,
            soak_churn_ms: 200,
            ..Plan::full()
        }
    }
}

/// One server under one scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    pub server: String,
    pub load: LoadResult,
    pub rss_before_kb: u64,
    pub rss_after_kb: u64,
    /// CPU time the server process used per completed request.
    pub server_cpu_us_per_request: f64,
    pub db: DbDelta,
}

impl Measurement {
    pub fn per_request(&self, count: u64) -> f64 {
        if self.load.requests == 0 {
            return 0.0;
        }
        count as f64 / self.load.requests as f64
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignIn {
    pub raw_hash_rate: f64,
    pub raw_hash_workers: usize,
    pub raw_hash_mean_ms: f64,
    /// Both measurements (before and after the sign-in runs); the higher is used.
    #[serde(default)]
    pub raw_hash_rates: Vec<f64>,
    pub servers: Vec<Measurement>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Isolation {
    pub server: String,
    pub alone: LoadResult,
    pub flooded: LoadResult,
    pub flood: LoadResult,
    pub rss_after_kb: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SoakSample {
    pub t_s: f64,
    pub rss_kb: u64,
    pub session_rows: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Soak {
    pub load: LoadResult,
    pub rss_start_kb: u64,
    pub rss_end_kb: u64,
    pub session_rows_start: i64,
    pub session_rows_max: i64,
    pub session_rows_end: i64,
    pub sessions_created: u64,
    pub churn_failures: u64,
    pub samples: Vec<SoakSample>,
    pub flags: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Census {
    pub server: String,
    pub scenario: String,
    pub requests: u64,
    pub round_trips: proxy::Snapshot,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub os: String,
    pub kernel: String,
    pub rustc: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PageBytes {
    pub server: String,
    pub account: usize,
    pub forbidden: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub date: String,
    pub command: String,
    pub commit: String,
    pub machine: Machine,
    pub database: String,
    pub load_generator: String,
    pub plan: Plan,
    pub page_bytes: Vec<PageBytes>,
    pub anonymous: Vec<Measurement>,
    pub hot_rounds: Vec<Vec<Measurement>>,
    pub forbidden: Vec<Measurement>,
    pub sign_in: SignIn,
    pub isolation: Vec<Isolation>,
    pub census: Vec<Census>,
    pub soak: Soak,
    pub wall_s: f64,
    /// /proc/loadavg at the start and the end: how busy the shared machine was.
    #[serde(default)]
    pub load_average: Vec<String>,
    /// The cargo profile the servers and this driver were built with: `release`, or `dev`
    /// when CI only proves the harness works (`BENCH_PROFILE=dev`; figures meaningless).
    #[serde(default = "release")]
    pub build: String,
}

fn release() -> String {
    "release".into()
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run_main(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn run_main(args: Args) -> anyhow::Result<()> {
    if let Some(json) = &args.render {
        let text = std::fs::read_to_string(json).with_context(|| format!("{}", json.display()))?;
        let results: Results = serde_json::from_str(&text)?;
        let (markdown, _) = outputs(&args);
        report::write_markdown(&results, &markdown)?;
        log(format!("rendered {}", markdown.display()));
        return Ok(());
    }
    let started = Instant::now();
    load::ensure_wrk()?;
    std::fs::create_dir_all(&args.work_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let cluster = match &args.database_url {
        Some(_) => None,
        None => {
            eprintln!("bench: starting a private PostgreSQL cluster");
            Some(db::start_cluster(&args.work_dir.join("cluster"), &runtime)?)
        }
    };
    // The cluster lives in `Db` and is stopped after every server has stopped (they are
    // dropped inside `run`); Ctrl-C or SIGTERM cancels `run` the same way.
    let (result, cluster) = runtime.block_on(async {
        let db = Db::open(cluster, args.database_url.as_deref()).await?;
        let outcome = tokio::select! {
            result = run(&args, &db, started) => result,
            () = interrupted() => Err(anyhow::anyhow!("interrupted; servers stopped")),
        };
        for name in DATABASES {
            db.drop_database(name).await;
        }
        anyhow::Ok((outcome, db.close().await))
    })?;
    if let Some(cluster) = cluster {
        cluster.stop();
    }
    runtime.shutdown_timeout(Duration::from_secs(5));
    result
}

async fn interrupted() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}

const DATABASES: [&str; 4] = [
    "bench_portcullis",
    "bench_ceiling",
    "bench_peer",
    "bench_soak",
];

/// A server under test, with its database and the requests the scenarios send it.
struct Subject {
    server: Server,
    db_name: &'static str,
    pool: PgPool,
    /// `Cookie` header values, one per signed-in session.
    cookies: Vec<String>,
}

fn log(message: impl AsRef<str>) {
    eprintln!("bench: {}", message.as_ref());
}

async fn run(args: &Args, db: &Db, started: Instant) -> anyhow::Result<()> {
    let plan = if args.quick {
        Plan::quick()
    } else {
        Plan::full()
    };
    let bins = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("the bench binary has no directory")?
            .to_path_buf(),
    };
    let load_at_start = load_average();
    let work = args.work_dir.clone();
    let logs = work.join("logs");
    std::fs::create_dir_all(&logs)?;
    log(format!("{} ({} mode)", db.description, plan.mode));

    // Seed: the same users (names, roles, password) in each server's database.
    let hasher = PasswordHasher::start(0)?;
    let portcullis_pool = seed_portcullis(db, "bench_portcullis", &hasher, &plan).await?;
    let ceiling_pool = seed_ceiling(db, &plan).await?;
    let peer_pool = seed_peer(db, &plan).await?;

    log("starting the three servers");
    let mut portcullis = Subject {
        server: start_portcullis(&bins, db, "bench_portcullis", &logs, &[]).await?,
        db_name: "bench_portcullis",
        pool: portcullis_pool,
        cookies: Vec::new(),
    };
    let mut ceiling = Subject {
        server: start_app(&bins, "ceiling", db, "bench_ceiling", &logs).await?,
        db_name: "bench_ceiling",
        pool: ceiling_pool,
        cookies: Vec::new(),
    };
    let mut peer = Subject {
        server: start_app(&bins, "peer", db, "bench_peer", &logs).await?,
        db_name: "bench_peer",
        pool: peer_pool,
        cookies: Vec::new(),
    };

    log(format!("signing in {} sessions per server", plan.sessions));
    portcullis.cookies =
        sessions::portcullis_sessions(&portcullis.server.base, plan.sessions, plan.users).await?;
    peer.cookies = sessions::peer_sessions(&peer.server.base, plan.sessions, plan.users).await?;
    ceiling.cookies = sessions::ceiling_sessions(&ceiling.pool).await?;
    let page_bytes = vec![
        sessions::preflight(&portcullis.server, &portcullis.cookies[0]).await?,
        sessions::preflight(&ceiling.server, &ceiling.cookies[0]).await?,
        sessions::preflight(&peer.server, &peer.cookies[0]).await?,
    ];

    let subjects = [&portcullis, &ceiling, &peer];
    for s in subjects {
        let warm = hot_load(&work, s)?;
        warm.run(plan.page_connections, Duration::from_secs(plan.warmup_s))
            .await?;
    }

    log("scenario 1: anonymous GET /account");
    let mut anonymous = Vec::new();
    for s in subjects {
        let load = Load::prepare(
            &work,
            &format!("{}-anonymous", s.server.name),
            &s.server.base,
            &[Request::get("/account", "")],
            "3xx",
        )?;
        anonymous.push(measure(db, s, &load, plan.page_connections, plan.page_s).await?);
    }

    log("scenario 2: authenticated GET /account (hot path)");
    let mut hot_rounds = Vec::new();
    for round in 0..plan.hot_rounds {
        let mut measurements = Vec::new();
        // Rotate the order each round so no server always runs first (or last).
        for k in 0..subjects.len() {
            let s = subjects[(k + round) % subjects.len()];
            let load = hot_load(&work, s)?;
            let profile = (args.perf && round == 0).then(|| perf_record(&work, s, plan.hot_s));
            measurements.push(measure(db, s, &load, plan.page_connections, plan.hot_s).await?);
            if let Some(Ok(mut perf)) = profile {
                let _ = perf.wait().await;
            }
        }
        measurements.sort_by_key(|m| order(&m.server));
        hot_rounds.push(measurements);
    }

    log("scenario 3: GET /reports as a member (403)");
    let mut forbidden = Vec::new();
    for s in subjects {
        let requests: Vec<Request> = s
            .cookies
            .iter()
            .map(|c| Request::get("/reports", c.clone()))
            .collect();
        let load = Load::prepare(
            &work,
            &format!("{}-forbidden", s.server.name),
            &s.server.base,
            &requests,
            "403",
        )?;
        forbidden.push(measure(db, s, &load, plan.page_connections, plan.page_s).await?);
    }

    log("scenario 4: sign-in throughput vs raw argon2id");
    // The raw rate is measured before and after the sign-in runs and the better one kept:
    // on a shared machine a busy neighbour lowers it, which would flatter the ratio.
    let first = raw_hash_rate(&hasher, plan.raw_hash_s).await?;
    let portcullis_login = portcullis_login_load(&work, &portcullis.server, &plan).await?;
    let peer_login = peer_login_load(&work, &peer.server, &plan)?;
    let servers = vec![
        measure(
            db,
            &portcullis,
            &portcullis_login,
            plan.login_connections,
            plan.signin_s,
        )
        .await?,
        measure(
            db,
            &peer,
            &peer_login,
            plan.login_connections,
            plan.signin_s,
        )
        .await?,
    ];
    let second = raw_hash_rate(&hasher, plan.raw_hash_s).await?;
    drop(hasher);
    let (raw_rate, raw_workers, raw_mean) = if second.0 > first.0 { second } else { first };
    let sign_in = SignIn {
        raw_hash_rate: raw_rate,
        raw_hash_workers: raw_workers,
        raw_hash_mean_ms: raw_mean,
        raw_hash_rates: vec![first.0, second.0],
        servers,
    };

    log("scenario 5: hot path alone, then under a sign-in flood");
    let mut isolation = Vec::new();
    for (s, flood) in [(&portcullis, &portcullis_login), (&peer, &peer_login)] {
        isolation.push(isolate(&work, s, flood, &plan).await?);
    }

    log("round-trip census (through a counting proxy)");
    let mut census = Vec::new();
    for s in subjects {
        census.extend(round_trip_census(&bins, db, &work, &logs, s, &plan).await?);
    }

    // The soak runs alone on the machine.
    let rss_final: Vec<(&'static str, u64)> = subjects
        .iter()
        .map(|s| (s.server.name, s.server.rss_kb()))
        .collect();
    log(format!("final RSS before the soak: {rss_final:?}"));
    portcullis.server.stop().await;
    ceiling.server.stop().await;
    peer.server.stop().await;

    log(format!(
        "scenario 6: soak, {} authenticated requests",
        plan.soak_requests
    ));
    let soak = soak(&bins, db, &work, &logs, &plan).await?;

    let results = Results {
        date: report::now(),
        command: args.command.clone().unwrap_or_else(|| {
            if args.quick {
                "benches/run --quick".into()
            } else {
                "benches/run".into()
            }
        }),
        commit: report::commit(Path::new(REPO)),
        build: if cfg!(debug_assertions) {
            "dev".into()
        } else {
            release()
        },
        machine: report::machine(),
        database: db.description.clone(),
        load_generator: load::wrk_version(),
        plan: plan.clone(),
        page_bytes,
        anonymous,
        hot_rounds,
        forbidden,
        sign_in,
        isolation,
        census,
        soak,
        wall_s: started.elapsed().as_secs_f64(),
        load_average: vec![load_at_start, load_average()],
    };
    let (markdown, json) = outputs(args);
    report::write(&results, &markdown, &json)?;
    log(format!(
        "wrote {} and {} in {:.0} s",
        markdown.display(),
        json.display(),
        results.wall_s
    ));
    print!("{}", report::summary(&results));
    Ok(())
}

fn outputs(args: &Args) -> (PathBuf, PathBuf) {
    let repo = Path::new(REPO);
    let (md, json) = if args.quick {
        (
            repo.join("target/bench/BENCHMARKS.quick.md"),
            repo.join("target/bench/quick.json"),
        )
    } else {
        (
            repo.join("BENCHMARKS.md"),
            repo.join("benches/results/latest.json"),
        )
    };
    (
        args.markdown.clone().unwrap_or(md),
        args.json.clone().unwrap_or(json),
    )
}

pub fn order(server: &str) -> usize {
    match server {
        "portcullis" => 0,
        "ceiling" => 1,
        _ => 2,
    }
}

fn hot_load(work: &Path, s: &Subject) -> anyhow::Result<Load> {
    let requests: Vec<Request> = s
        .cookies
        .iter()
        .map(|c| Request::get("/account", c.clone()))
        .collect();
    Load::prepare(
        work,
        &format!("{}-hot", s.server.name),
        &s.server.base,
        &requests,
        "200",
    )
}

/// One wrk run against one server, with its memory and database activity around it.
async fn measure(
    db: &Db,
    s: &Subject,
    load: &Load,
    connections: u32,
    seconds: u64,
) -> anyhow::Result<Measurement> {
    let rss_before_kb = s.server.rss_kb();
    let mark = db.mark(s.db_name, &s.pool).await?;
    let cpu_before = s.server.cpu_us();
    let result = load.run(connections, Duration::from_secs(seconds)).await?;
    let cpu = s.server.cpu_us().saturating_sub(cpu_before);
    let rss_after_kb = s.server.rss_kb();
    let delta = db.delta(s.db_name, &s.pool, mark).await?;
    let server_cpu_us_per_request = cpu as f64 / result.requests.max(1) as f64;
    log(format!(
        "  {:<10} {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>7.2} ms  server CPU {:>5.0} µs/req  errors {}{}",
        s.server.name,
        result.rps,
        result.p50_ms,
        result.p99_ms,
        server_cpu_us_per_request,
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
        db: delta,
    })
}

/// `perf record` of the server for `seconds` (a CPU profile of its hot path).
fn perf_record(work: &Path, s: &Subject, seconds: u64) -> anyhow::Result<tokio::process::Child> {
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

async fn isolate(work: &Path, s: &Subject, flood: &Load, plan: &Plan) -> anyhow::Result<Isolation> {
    let hot = hot_load(work, s)?;
    let duration = Duration::from_secs(plan.isolation_s);
    let alone = hot.run(plan.page_connections, duration).await?;
    // The flood starts first and ends after the hot path, so the whole measured window
    // is under flood.
    let flood_run = flood.run(plan.login_connections, duration + Duration::from_secs(3));
    let hot_run = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        hot.run(plan.page_connections, duration).await
    };
    let (flood, flooded) = tokio::join!(flood_run, hot_run);
    let (flood, flooded) = (flood?, flooded?);
    log(format!(
        "  {:<10} p99 alone {:.2} ms, under flood {:.2} ms ({:.1}x); flood {:.1} sign-ins/s, {} errors",
        s.server.name,
        alone.p99_ms,
        flooded.p99_ms,
        flooded.p99_ms / alone.p99_ms.max(f64::EPSILON),
        flood.rps,
        flood.errors()
    ));
    Ok(Isolation {
        server: s.server.name.into(),
        alone,
        flooded,
        flood,
        rss_after_kb: s.server.rss_kb(),
    })
}

/// The rate of argon2id verifications of the same parameters, in this process, with one
/// worker per core, kept busy by twice as many concurrent callers.
async fn raw_hash_rate(hasher: &PasswordHasher, seconds: u64) -> anyhow::Result<(f64, usize, f64)> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let stored = hasher.hash(portcullis_bench::PASSWORD.to_owned()).await?;
    let (before, _) = hasher.stats();
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
    let (after, mean) = hasher.stats();
    let count = done.load(Ordering::Relaxed);
    log(format!(
        "  raw argon2id: {count} verifications in {elapsed:.1} s on {workers} workers \
         ({:.1}/s, mean {:.1} ms; {} hashes total)",
        count as f64 / elapsed,
        mean.as_secs_f64() * 1000.0,
        after - before
    ));
    Ok((count as f64 / elapsed, workers, mean.as_secs_f64() * 1000.0))
}

async fn portcullis_login_load(work: &Path, server: &Server, plan: &Plan) -> anyhow::Result<Load> {
    let (cookie, token) = sessions::portcullis_csrf_pair(&server.base).await?;
    let requests: Vec<Request> = (0..plan.users)
        .map(|k| Request {
            method: "POST",
            path: "/login".into(),
            cookie: format!("portcullis_csrf={cookie}"),
            body: format!(
                "username={}&password={}&csrf={token}&next=",
                sessions::member(k),
                sessions::form_encode(portcullis_bench::PASSWORD)
            ),
        })
        .collect();
    Load::prepare(work, "portcullis-login", &server.base, &requests, "3xx")
}

fn peer_login_load(work: &Path, server: &Server, plan: &Plan) -> anyhow::Result<Load> {
    let requests: Vec<Request> = (0..plan.users)
        .map(|k| Request {
            method: "POST",
            path: "/login".into(),
            cookie: String::new(),
            body: format!(
                "username={}&password={}&next=",
                sessions::member(k),
                sessions::form_encode(portcullis_bench::PASSWORD)
            ),
        })
        .collect();
    Load::prepare(work, "peer-login", &server.base, &requests, "3xx")
}

async fn seed_portcullis(
    db: &Db,
    name: &str,
    hasher: &PasswordHasher,
    plan: &Plan,
) -> anyhow::Result<PgPool> {
    let pool = db.recreate(name).await?;
    portcullis::db::migrate(&pool).await?;
    for k in 0..plan.users {
        admin::create(
            &pool,
            hasher,
            &Actor::cli(),
            &sessions::member(k),
            portcullis_bench::PASSWORD,
            Role::Member,
            15,
        )
        .await
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", sessions::member(k)))?;
    }
    Ok(pool)
}

async fn seed_ceiling(db: &Db, plan: &Plan) -> anyhow::Result<PgPool> {
    let pool = db.recreate("bench_ceiling").await?;
    portcullis_bench::apply_schema(&pool, portcullis_bench::CEILING_SCHEMA).await?;
    for k in 0..plan.users {
        sqlx::query("INSERT INTO users (username, role) VALUES ($1, 'member')")
            .bind(sessions::member(k))
            .execute(&pool)
            .await?;
    }
    for i in 0..plan.sessions {
        let token = sessions::random_token();
        sqlx::query(
            "INSERT INTO tokens (token, user_id, expires_at) \
             SELECT $1, id, now() + interval '1 day' FROM users WHERE username = $2",
        )
        .bind(token)
        .bind(sessions::member(i % plan.users))
        .execute(&pool)
        .await?;
    }
    Ok(pool)
}

async fn seed_peer(db: &Db, plan: &Plan) -> anyhow::Result<PgPool> {
    let pool = db.recreate("bench_peer").await?;
    portcullis_bench::apply_schema(&pool, portcullis_bench::PEER_SCHEMA).await?;
    for k in 0..plan.users {
        // password_auth's defaults are argon2id m=19456 KiB, t=2, p=1: Portcullis' own.
        let hash = tokio::task::spawn_blocking(|| {
            password_auth::generate_hash(portcullis_bench::PASSWORD)
        })
        .await?;
        sqlx::query("INSERT INTO users (username, password, role) VALUES ($1, $2, 'member')")
            .bind(sessions::member(k))
            .bind(hash)
            .execute(&pool)
            .await?;
    }
    Ok(pool)
}

async fn start_portcullis(
    bins: &Path,
    db: &Db,
    db_name: &str,
    logs: &Path,
    extra: &[&str],
) -> anyhow::Result<Server> {
    start_portcullis_at(bins, &db.url(db_name), logs, "portcullis", extra).await
}

async fn start_portcullis_at(
    bins: &Path,
    url: &str,
    logs: &Path,
    log_name: &str,
    extra: &[&str],
) -> anyhow::Result<Server> {
    let port = free_port()?;
    let mut args = vec![
        "serve".to_owned(),
        "--bind".into(),
        format!("127.0.0.1:{port}"),
        "--database-url".into(),
        url.to_owned(),
        "--static-dir".into(),
        format!("{REPO}/static"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Server::start(
        "portcullis",
        &bins.join("portcullis"),
        &args,
        port,
        &logs.join(format!("{log_name}.log")),
    )
    .await
}

async fn start_app(
    bins: &Path,
    name: &'static str,
    db: &Db,
    db_name: &str,
    logs: &Path,
) -> anyhow::Result<Server> {
    start_app_at(bins, name, &db.url(db_name), logs, name).await
}

async fn start_app_at(
    bins: &Path,
    name: &'static str,
    url: &str,
    logs: &Path,
    log_name: &str,
) -> anyhow::Result<Server> {
    let port = free_port()?;
    let args = vec![
        "--bind".to_owned(),
        format!("127.0.0.1:{port}"),
        "--database-url".into(),
        url.to_owned(),
    ];
    Server::start(
        name,
        &bins.join(name),
        &args,
        port,
        &logs.join(format!("{log_name}.log")),
    )
    .await
}

/// Round trips per request, counted by a second instance of the server whose database
/// connection goes through the counting proxy.
async fn round_trip_census(
    bins: &Path,
    db: &Db,
    work: &Path,
    logs: &Path,
    s: &Subject,
    plan: &Plan,
) -> anyhow::Result<Vec<Census>> {
    let (port, counters, proxy_task) = proxy::start(db.upstream.clone()).await?;
    let url = db.proxied_url(s.db_name, port)?;
    let log_name = format!("{}-census", s.server.name);
    let instance = match s.server.name {
        "portcullis" => start_portcullis_at(bins, &url, logs, &log_name, &[]).await?,
        name => start_app_at(bins, name, &url, logs, &log_name).await?,
    };
    let member_cookies = || s.cookies.iter().cloned();
    let scenarios: [(&'static str, Vec<Request>, &str); 3] = [
        ("anonymous", vec![Request::get("/account", "")], "3xx"),
        (
            "hot",
            member_cookies()
                .map(|c| Request::get("/account", c))
                .collect(),
            "200",
        ),
        (
            "forbidden",
            member_cookies()
                .map(|c| Request::get("/reports", c))
                .collect(),
            "403",
        ),
    ];
    let mut out = Vec::new();
    let seconds = Duration::from_secs(plan.census_s);
    for (scenario, requests, expect) in scenarios {
        let load = Load::prepare(
            work,
            &format!("{}-census-{scenario}", s.server.name),
            &instance.base,
            &requests,
            expect,
        )?;
        // Warm: every pooled connection open and its statements prepared.
        load.run(plan.census_connections, Duration::from_secs(1))
            .await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = counters.snapshot();
        let result = load.run(plan.census_connections, seconds).await?;
        // sqlx returns connections to the pool (and pings them) after the response.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let delta = counters.snapshot().since(&before);
        log(format!(
            "  {:<10} {:<9} {:.2} round trips/request ({:.2} with statements, {:.2} pings) over {} requests",
            s.server.name,
            scenario,
            delta.round_trips() as f64 / result.requests.max(1) as f64,
            delta.statement_round_trips as f64 / result.requests.max(1) as f64,
            delta.ping_round_trips as f64 / result.requests.max(1) as f64,
            result.requests
        ));
        out.push(Census {
            server: s.server.name.into(),
            scenario: scenario.into(),
            requests: result.requests,
            round_trips: delta,
        });
    }
    instance.stop().await;
    proxy_task.abort();
    Ok(out)
}

async fn soak(bins: &Path, db: &Db, work: &Path, logs: &Path, plan: &Plan) -> anyhow::Result<Soak> {
    let hasher = PasswordHasher::start(1)?;
    let pool = seed_portcullis(db, "bench_soak", &hasher, plan).await?;
    drop(hasher);
    let idle = format!("{}s", plan.soak_idle_s);
    let sweep = format!("{}s", plan.soak_sweep_s);
    let flags = [
        "--idle-timeout",
        idle.as_str(),
        "--cleanup-interval",
        sweep.as_str(),
        "--session-tombstone",
        sweep.as_str(),
    ];
    let server =
        start_portcullis_at(bins, &db.url("bench_soak"), logs, "portcullis-soak", &flags).await?;
    let cookies = sessions::portcullis_sessions(&server.base, plan.sessions, plan.users).await?;
    let subject = Subject {
        server,
        db_name: "bench_soak",
        pool,
        cookies,
    };
    let load = hot_load(work, &subject)?;
    load.run(
        plan.page_connections,
        Duration::from_secs(plan.warmup_s.max(2)),
    )
    .await?;
    let count_rows = |pool: PgPool| async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sessions")
            .fetch_one(&pool)
            .await
            .unwrap_or(-1)
    };
    let rss_start_kb = subject.server.rss_kb();
    let session_rows_start = count_rows(subject.pool.clone()).await;

    // Churn: new sessions signed in and abandoned throughout, so the sweeper has work.
    let stop = Arc::new(AtomicBool::new(false));
    let created = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let churn = {
        let (stop, created, failures) = (stop.clone(), created.clone(), failures.clone());
        let base = subject.server.base.clone();
        let (period, users) = (Duration::from_millis(plan.soak_churn_ms), plan.users);
        tokio::spawn(async move {
            let Ok(client) = sessions::client() else {
                return;
            };
            let Ok((cookie, token)) = sessions::portcullis_csrf_pair(&base).await else {
                failures.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                let signed_in =
                    sessions::portcullis_sign_in(&client, &base, &cookie, &token, k % users).await;
                match signed_in {
                    Ok(_) => created.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failures.fetch_add(1, Ordering::Relaxed),
                };
                k += 1;
                tokio::time::sleep(period).await;
            }
        })
    };
    let samples = Arc::new(std::sync::Mutex::new(Vec::<SoakSample>::new()));
    let sampler = {
        let (stop, samples, pool) = (stop.clone(), samples.clone(), subject.pool.clone());
        let pid = subject.server.pid;
        let every = Duration::from_secs(if plan.mode == "quick" { 1 } else { 5 });
        tokio::spawn(async move {
            let t0 = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let rows = count_rows(pool.clone()).await;
                let rss_kb = servers::rss_of(pid);
                if let Ok(mut samples) = samples.lock() {
                    samples.push(SoakSample {
                        t_s: t0.elapsed().as_secs_f64(),
                        rss_kb,
                        session_rows: rows,
                    });
                }
                tokio::time::sleep(every).await;
            }
        })
    };
    let result = soak_load(&load, plan).await;
    stop.store(true, Ordering::Relaxed);
    let _ = churn.await;
    let _ = sampler.await;
    let result = result?;
    let rss_end_kb = subject.server.rss_kb();
    let session_rows_end = count_rows(subject.pool.clone()).await;
    let samples = samples.lock().map(|s| s.clone()).unwrap_or_default();
    let session_rows_max = samples
        .iter()
        .map(|s| s.session_rows)
        .chain([session_rows_start, session_rows_end])
        .max()
        .unwrap_or(0);
    log(format!(
        "  {} requests in {:.0} s ({:.0} req/s), p99 {:.2} ms, errors {}; RSS {} -> {} KiB; \
         session rows {} -> max {} -> {} with {} sign-ins during the soak",
        result.requests,
        result.duration_s,
        result.rps,
        result.p99_ms,
        result.errors(),
        rss_start_kb,
        rss_end_kb,
        session_rows_start,
        session_rows_max,
        session_rows_end,
        created.load(Ordering::Relaxed)
    ));
    subject.server.stop().await;
    Ok(Soak {
        load: result,
        rss_start_kb,
        rss_end_kb,
        session_rows_start,
        session_rows_max,
        session_rows_end,
        sessions_created: created.load(Ordering::Relaxed),
        churn_failures: failures.load(Ordering::Relaxed),
        samples,
        flags: flags.join(" "),
    })
}

/// Runs the soak's requests as a series of duration-bound wrk runs (wrk's own count limit
/// stops the connections but not the clock, which would misstate the rate), each sized from
/// the previous rate, until `soak_requests` are done or `soak_max_s` has passed.
async fn soak_load(load: &Load, plan: &Plan) -> anyhow::Result<LoadResult> {
    const CHUNK_S: f64 = 10.0;
    let started = Instant::now();
    let mut chunks: Vec<LoadResult> = Vec::new();
    let mut done = 0u64;
    let mut rate = 0.0f64;
    while done < plan.soak_requests && started.elapsed().as_secs() < plan.soak_max_s {
        let remaining = (plan.soak_requests - done) as f64;
        let seconds = if rate > 0.0 {
            (remaining / rate).ceil().clamp(1.0, CHUNK_S)
        } else {
            2.0
        };
        let chunk = load
            .run(plan.page_connections, Duration::from_secs_f64(seconds))
            .await?;
        rate = chunk.rps;
        done += chunk.requests;
        chunks.push(chunk);
    }
    let requests: u64 = chunks.iter().map(|c| c.requests).sum();
    let duration_s: f64 = chunks.iter().map(|c| c.duration_s).sum();
    let p50s: Vec<f64> = chunks.iter().map(|c| c.p50_ms).collect();
    let worst = |f: fn(&LoadResult) -> f64| chunks.iter().map(f).fold(0.0, f64::max);
    let mut statuses: Vec<String> = chunks
        .iter()
        .filter(|c| !c.unexpected_statuses.is_empty())
        .map(|c| c.unexpected_statuses.clone())
        .collect();
    statuses.dedup();
    Ok(LoadResult {
        connections: plan.page_connections,
        requests,
        duration_s,
        rps: requests as f64 / duration_s.max(1e-9),
        ok: chunks.iter().map(|c| c.ok).sum(),
        unexpected: chunks.iter().map(|c| c.unexpected).sum(),
        unexpected_statuses: statuses.join(";"),
        socket_errors: chunks.iter().map(|c| c.socket_errors).sum(),
        bytes: chunks.iter().map(|c| c.bytes).sum(),
        p50_ms: report::median(p50s),
        p90_ms: worst(|c| c.p90_ms),
        // The worst chunk's: a soak is judged by its bad moments.
        p99_ms: worst(|c| c.p99_ms),
        p999_ms: worst(|c| c.p999_ms),
        max_ms: worst(|c| c.max_ms),
        mean_ms: chunks
            .iter()
            .map(|c| c.mean_ms * c.requests as f64)
            .sum::<f64>()
            / requests.max(1) as f64,
    })
}
