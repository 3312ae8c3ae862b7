//! The benchmark driver: `benches/run` (or `cargo run --release --manifest-path
//! benches/Cargo.toml --bin bench`) builds everything, then this starts PostgreSQL, seeds
//! users, runs Portcullis, the ceiling and the peer side by side under wrk on loopback, and
//! writes `BENCHMARKS.md` and a JSON file of raw figures.
//!
//! Absolute numbers on a shared two-core machine are noise; the ratios between servers
//! measured in the same run, against the same database and load, are the result.

mod db;
mod flood;
mod instructions;
mod load;
mod proxy;
mod report;
mod results;
mod scenarios;
mod sections;
mod servers;
mod sessions;
mod setup;
mod soak;
mod stages;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::Parser;
use portcullis::auth::password::PasswordHasher;
use sqlx::PgPool;

pub use crate::results::{
    Census, Isolation, Machine, Measurement, PageBytes, Plan, Results, SignIn, Soak, SoakSample,
};
use crate::{
    db::Db,
    load::{Load, Request},
    results::release,
    scenarios::{anonymous_load, flood_round, measure, page_load, perf_record, raw_hash_rate},
    servers::Server,
    setup::{
        Schema, populate, round_trip_census, seed_ceiling, seed_peer, seed_portcullis, start_app,
        start_portcullis,
    },
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
    /// Only count instructions per request (section 7) for Portcullis and the ceiling, and
    /// print them; writes no report. A quick check of a change to the request path that
    /// does not move with the machine's load. The callgrind dumps stay in the work
    /// directory (callgrind-<server>/) for `callgrind_annotate`.
    #[arg(long, conflicts_with_all = ["render", "perf"])]
    instructions: bool,
    /// Only run scenario 5 (the hot path alone and under a sign-in flood) for Portcullis,
    /// this many rounds, every other one with busy neighbours, and print each round's
    /// figures; writes no report. For trying a change to the flood's tail in minutes.
    #[arg(long, value_name = "ROUNDS", conflicts_with_all = ["render", "perf", "instructions"])]
    isolation: Option<usize>,
    /// Only run scenarios 1 and 2 (anonymous `/account`, signed-in `/account` and
    /// `/api/me`) for Portcullis and the ceiling, this many rounds in alternating order,
    /// and print each round's req/s, CPU per request and ratio; writes no report. For
    /// trying a change to the request path in minutes, where `--instructions` leaves out
    /// the kernel and PostgreSQL.
    #[arg(long, value_name = "ROUNDS", conflicts_with_all = ["render", "perf", "instructions", "isolation"])]
    versus: Option<usize>,
    /// Leave the benchmark's databases in place at the end (dropped by default), to look
    /// at what the servers' statements cost on their own: `EXPLAIN`, or pgbench with one
    /// of the statements. Easiest with `--database-url`: a private cluster is stopped at
    /// the end, and the next run replaces it.
    #[arg(long)]
    keep_databases: bool,
    /// The command line as typed, for the report (benches/run sets it).
    #[arg(long, env = "BENCH_COMMAND", hide = true)]
    command: Option<String>,
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
        let mut results: Results = serde_json::from_str(&text)?;
        if results.anonymous_rounds.is_empty() && !results.anonymous.is_empty() {
            // Reports before the anonymous scenario had rounds: their one run per server.
            results.anonymous_rounds = vec![std::mem::take(&mut results.anonymous)];
        }
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
        if !args.keep_databases {
            for name in DATABASES {
                db.drop_database(name).await;
            }
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
pub struct Subject {
    pub server: Server,
    pub db_name: &'static str,
    pub pool: PgPool,
    /// `Cookie` header values, one per signed-in session.
    pub cookies: Vec<String>,
}

pub fn log(message: impl AsRef<str>) {
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
    if report::autogroup() == "1" {
        log(
            "kernel.sched_autogroup_enabled = 1: every PostgreSQL backend is a scheduling group \
             of its own, and scenario 5's tail will show it (docs/DEPLOY.md, benches/ANALYSIS.md)",
        );
    }

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
    log(format!(
        "adding {} resident accounts and {} sessions to each database",
        plan.residents, plan.resident_sessions
    ));
    for (subject, schema) in [
        (&portcullis, Schema::Portcullis),
        (&ceiling, Schema::Ceiling),
        (&peer, Schema::Peer),
    ] {
        populate(&subject.pool, schema, &plan).await?;
    }
    let page_bytes = vec![
        sessions::preflight(&portcullis.server, &portcullis.cookies[0]).await?,
        sessions::preflight(&ceiling.server, &ceiling.cookies[0]).await?,
        sessions::preflight(&peer.server, &peer.cookies[0]).await?,
    ];
    sessions::compare_pages(&page_bytes);
    if args.instructions {
        if !instructions::available() {
            bail!("valgrind is not installed (benches/run installs it as root)");
        }
        for s in [&portcullis, &ceiling] {
            instructions::count(&bins, db, &work, &logs, s, &plan).await?;
        }
        return Ok(());
    }
    if let Some(rounds) = args.isolation {
        let flood = scenarios::portcullis_login_load(&work, &portcullis.server, &plan).await?;
        for round in 0..rounds {
            let neighbours = if round % 2 == 1 { plan.neighbours } else { 0 };
            let round = flood_round(&work, &portcullis, &flood, &plan, neighbours).await?;
            for (condition, load) in [("alone", &round.alone), ("flooded", &round.flooded)] {
                log(format!(
                    // wrk corrects for coordinated omission: a stall adds a sample per
                    // request interval it held up, so latencies outnumber requests.
                    "  {condition}: {} requests, {:.0}/s, p50 {:.2} p90 {:.2} p99 {:.2} \
                     p99.9 {:.2} max {:.2} ms, mean {:.2} ms over {} latency samples, {:.1} s",
                    load.requests,
                    load.rps,
                    load.p50_ms,
                    load.p90_ms,
                    load.p99_ms,
                    load.p999_ms,
                    load.max_ms,
                    load.mean_ms,
                    load.latency_us.iter().map(|(_, n)| n).sum::<u64>(),
                    load.duration_s
                ));
            }
        }
        return Ok(());
    }

    if let Some(rounds) = args.versus {
        return versus(&work, db, [&portcullis, &ceiling], &plan, rounds).await;
    }

    let subjects = [&portcullis, &ceiling, &peer];
    for s in subjects {
        for load in [
            anonymous_load(&work, s)?,
            page_load(&work, s, "/account")?,
            page_load(&work, s, "/api/me")?,
        ] {
            load.run(plan.page_connections, Duration::from_secs(plan.warmup_s))
                .await?;
        }
    }

    log("scenarios 1 and 2: anonymous GET /account, signed-in GET /account and GET /api/me");
    // All three in interleaved rounds: a single run per server moved the anonymous ratio
    // from 0.78× to 0.59× between two runs of the same code (benches/ANALYSIS.md).
    let mut anonymous_rounds = Vec::new();
    let mut hot_rounds = Vec::new();
    let mut api_rounds = Vec::new();
    for round in 0..plan.hot_rounds {
        for (path, rounds) in [
            (None, &mut anonymous_rounds),
            (Some("/account"), &mut hot_rounds),
            (Some("/api/me"), &mut api_rounds),
        ] {
            let mut measurements = Vec::new();
            // Rotate the order each round so no server always runs first (or last).
            for k in 0..subjects.len() {
                let s = subjects[(k + round) % subjects.len()];
                let load = match path {
                    Some(path) => page_load(&work, s, path)?,
                    None => anonymous_load(&work, s)?,
                };
                let profile = (args.perf && round == 0 && path == Some("/account"))
                    .then(|| perf_record(&work, s, plan.hot_s));
                measurements.push(measure(db, s, &load, plan.page_connections, plan.hot_s).await?);
                if let Some(Ok(mut perf)) = profile {
                    let _ = perf.wait().await;
                }
            }
            measurements.sort_by_key(|m| order(&m.server));
            rounds.push(measurements);
        }
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
    let portcullis_workers = portcullis::config::hash_workers(None);
    let server_hasher = PasswordHasher::start(portcullis_workers)?;
    let first = raw_hash_rate(&hasher, plan.raw_hash_s).await?;
    let first_server = raw_hash_rate(&server_hasher, plan.raw_hash_s).await?;
    let portcullis_login =
        scenarios::portcullis_login_load(&work, &portcullis.server, &plan).await?;
    let peer_login = scenarios::peer_login_load(&work, &peer.server, &plan)?;
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
    let second_server = raw_hash_rate(&server_hasher, plan.raw_hash_s).await?;
    drop((hasher, server_hasher));
    let (raw_rate, raw_workers, raw_mean) = if second.0 > first.0 { second } else { first };
    let sign_in = SignIn {
        raw_hash_rate: raw_rate,
        raw_hash_workers: raw_workers,
        raw_hash_mean_ms: raw_mean,
        raw_hash_rates: vec![first.0, second.0],
        server_hash_rate: first_server.0.max(second_server.0),
        server_hash_workers: portcullis_workers,
        servers,
    };

    log(format!(
        "scenario 5: hot path alone, then under a sign-in flood ({} connections), {} round(s)",
        plan.flood_connections, plan.isolation_rounds
    ));
    let mut isolation = Vec::new();
    for (s, flood) in [(&portcullis, &portcullis_login), (&peer, &peer_login)] {
        let mut rounds = Vec::new();
        for round in 0..plan.isolation_rounds {
            let busy = round + plan.neighbour_rounds >= plan.isolation_rounds;
            let neighbours = if busy { plan.neighbours } else { 0 };
            rounds.push(flood_round(&work, s, flood, &plan, neighbours).await?);
        }
        isolation.push(Isolation {
            server: s.server.name.into(),
            rounds,
            rss_after_kb: s.server.rss_kb(),
        });
    }

    log("round-trip census (through a counting proxy)");
    let mut census = Vec::new();
    for s in subjects {
        census.extend(round_trip_census(&bins, db, &work, &logs, s, &plan).await?);
    }

    let mut instructions = Vec::new();
    if instructions::available() {
        log("instructions per request (a callgrind instance of each server)");
        for s in subjects {
            instructions.extend(instructions::count(&bins, db, &work, &logs, s, &plan).await?);
        }
    } else {
        log("valgrind is not installed: no instruction counts (benches/run installs it as root)");
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
    let soak = soak::soak(&bins, db, &work, &logs, &plan).await?;

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
        anonymous: Vec::new(),
        anonymous_rounds,
        hot_rounds,
        api_rounds,
        forbidden,
        sign_in,
        isolation,
        census,
        instructions,
        soak,
        wall_s: started.elapsed().as_secs_f64(),
        load_average: vec![load_at_start, load_average()],
        portcullis_hash_workers: portcullis_workers,
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

/// `--versus`: scenarios 1 and 2 for Portcullis against the ceiling, `rounds` rounds (the
/// order alternating), each round's figures and ratio printed, then the median ratios.
async fn versus(
    work: &Path,
    db: &Db,
    subjects: [&Subject; 2],
    plan: &Plan,
    rounds: usize,
) -> anyhow::Result<()> {
    let paths = [None, Some("/account"), Some("/api/me")];
    let load_of = |s: &Subject, path: Option<&str>| match path {
        Some(path) => page_load(work, s, path),
        None => anonymous_load(work, s),
    };
    for s in subjects {
        for path in paths {
            load_of(s, path)?
                .run(plan.page_connections, Duration::from_secs(plan.warmup_s))
                .await?;
        }
    }
    let mut ratios = vec![Vec::new(); paths.len()];
    for round in 0..rounds {
        for (path, ratios) in paths.iter().zip(&mut ratios) {
            let mut rps = [0.0; 2];
            for k in 0..subjects.len() {
                let i = (k + round) % subjects.len();
                let s = subjects[i];
                let m = measure(
                    db,
                    s,
                    &load_of(s, *path)?,
                    plan.page_connections,
                    plan.hot_s,
                )
                .await?;
                rps[i] = m.load.rps;
                log(format!(
                    "  round {round} {:<14} {:<10} {:>8.0} req/s, server {:>5.1} µs, \
                     PostgreSQL {:>5.1} µs per request, {} unexpected",
                    path.unwrap_or("anonymous"),
                    s.server.name,
                    m.load.rps,
                    m.server_cpu_us_per_request,
                    m.postgres_cpu_us_per_request.unwrap_or(f64::NAN),
                    m.load.unexpected,
                ));
            }
            let ratio = rps[0] / rps[1].max(1.0);
            log(format!(
                "  round {round} {:<14} ratio {ratio:.3}",
                path.unwrap_or("anonymous")
            ));
            ratios.push(ratio);
        }
    }
    for (path, mut ratios) in paths.iter().zip(ratios) {
        ratios.sort_by(f64::total_cmp);
        log(format!(
            "{:<14} median ratio {:.3} (rounds, sorted: {})",
            path.unwrap_or("anonymous"),
            ratios[ratios.len() / 2],
            ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(())
}
