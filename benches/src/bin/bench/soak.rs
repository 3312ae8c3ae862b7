//! Scenario 6: a million authenticated requests against a fresh Portcullis whose
//! sessions idle out and get swept meanwhile, with memory and table size sampled.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use portcullis::auth::password::PasswordHasher;
use sqlx::PgPool;

use crate::{
    Plan, Soak, SoakSample, Subject,
    db::Db,
    load::{Load, LoadResult},
    log, report,
    scenarios::page_load,
    servers, sessions,
    setup::{Schema, populate, seed_portcullis, start_portcullis_at},
};

pub async fn soak(
    bins: &Path,
    db: &Db,
    work: &Path,
    logs: &Path,
    plan: &Plan,
) -> anyhow::Result<Soak> {
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
    // The tables of a deployment's size, as in the other scenarios.
    populate(&pool, Schema::Portcullis, plan).await?;
    let subject = Subject {
        server,
        db_name: "bench_soak",
        pool,
        cookies,
    };
    let load = page_load(work, &subject, "/account")?;
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
pub async fn soak_load(load: &Load, plan: &Plan) -> anyhow::Result<LoadResult> {
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
        latency_us: Vec::new(),
    })
}
