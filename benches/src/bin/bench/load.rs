//! The load generator: `wrk` on loopback, with `benches/wrk/bench.lua` rotating pre-built
//! requests and reporting a JSON summary.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// The Lua script, embedded so the driver works from any directory.
const SCRIPT: &str = include_str!("../../../wrk/bench.lua");

/// One request for the rotation.
pub struct Request {
    pub method: &'static str,
    pub path: String,
    /// The `Cookie` header value, empty for none.
    pub cookie: String,
    /// A form body, empty for none.
    pub body: String,
}

impl Request {
    pub fn get(path: &str, cookie: impl Into<String>) -> Request {
        Request {
            method: "GET",
            path: path.to_owned(),
            cookie: cookie.into(),
            body: String::new(),
        }
    }
}

/// What one wrk run reported (latencies in milliseconds).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoadResult {
    pub connections: u32,
    pub requests: u64,
    pub duration_s: f64,
    pub rps: f64,
    pub ok: u64,
    /// Responses with a status other than the one the scenario expects.
    pub unexpected: u64,
    pub unexpected_statuses: String,
    /// Connect, read, write errors and timeouts.
    pub socket_errors: u64,
    pub bytes: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    /// The latency distribution: (µs, count), ascending; kept in memory only, to pool runs.
    #[serde(skip)]
    pub latency_us: Vec<(u64, u64)>,
}

impl LoadResult {
    pub fn errors(&self) -> u64 {
        self.unexpected + self.socket_errors
    }

    /// Several runs as one: counts added, latency percentiles of the pooled distribution.
    pub fn pooled(runs: &[LoadResult]) -> LoadResult {
        let mut latency: Vec<(u64, u64)> = runs.iter().flat_map(|r| r.latency_us.clone()).collect();
        latency.sort_unstable();
        let total: u64 = latency.iter().map(|(_, n)| n).sum();
        let percentile = |p: f64| {
            let wanted = (p / 100.0 * total as f64).ceil() as u64;
            let mut seen = 0;
            for (value, count) in &latency {
                seen += count;
                if seen >= wanted.max(1) {
                    return *value as f64 / 1000.0;
                }
            }
            0.0
        };
        let requests: u64 = runs.iter().map(|r| r.requests).sum();
        let duration_s: f64 = runs.iter().map(|r| r.duration_s).sum();
        let mut statuses: Vec<String> = runs
            .iter()
            .filter(|r| !r.unexpected_statuses.is_empty())
            .map(|r| r.unexpected_statuses.clone())
            .collect();
        statuses.dedup();
        LoadResult {
            connections: runs.first().map_or(0, |r| r.connections),
            requests,
            duration_s,
            rps: requests as f64 / duration_s.max(1e-9),
            ok: runs.iter().map(|r| r.ok).sum(),
            unexpected: runs.iter().map(|r| r.unexpected).sum(),
            unexpected_statuses: statuses.join(";"),
            socket_errors: runs.iter().map(|r| r.socket_errors).sum(),
            bytes: runs.iter().map(|r| r.bytes).sum(),
            p50_ms: percentile(50.0),
            p90_ms: percentile(90.0),
            p99_ms: percentile(99.0),
            p999_ms: percentile(99.9),
            max_ms: latency.last().map_or(0.0, |(v, _)| *v as f64 / 1000.0),
            mean_ms: latency
                .iter()
                .map(|(v, n)| *v as f64 * *n as f64)
                .sum::<f64>()
                / total.max(1) as f64
                / 1000.0,
            latency_us: latency,
        }
    }
}

#[derive(Deserialize)]
struct WrkJson {
    requests: u64,
    duration_us: u64,
    bytes: u64,
    ok: u64,
    unexpected: u64,
    unexpected_statuses: String,
    connect_errors: u64,
    read_errors: u64,
    write_errors: u64,
    timeouts: u64,
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
    mean_us: f64,
    /// value, count, value, count, ...
    #[serde(default)]
    dist: Vec<u64>,
}

/// A prepared load: the script and request file on disk.
pub struct Load {
    pub url: String,
    requests_file: PathBuf,
    script: PathBuf,
    expect: String,
}

impl Load {
    /// Writes the request rotation for a run against `base` (e.g. `http://127.0.0.1:4000`).
    pub fn prepare(
        work_dir: &Path,
        name: &str,
        base: &str,
        requests: &[Request],
        expect: &str,
    ) -> anyhow::Result<Load> {
        let script = work_dir.join("bench.lua");
        // Rewritten when it differs: a work directory outlives the build that filled it.
        if std::fs::read_to_string(&script).ok().as_deref() != Some(SCRIPT) {
            std::fs::write(&script, SCRIPT).context("writing the wrk script")?;
        }
        let mut text = String::new();
        for r in requests {
            // Tabs and newlines would break the line format; none of ours carries them.
            if [&r.path, &r.cookie, &r.body]
                .iter()
                .any(|s| s.contains(['\t', '\n']))
            {
                bail!("request for {name} contains a tab or newline");
            }
            let _ = writeln!(text, "{}\t{}\t{}\t{}", r.method, r.path, r.cookie, r.body);
        }
        let requests_file = work_dir.join(format!("{name}.requests"));
        std::fs::write(&requests_file, text)
            .with_context(|| format!("writing {}", requests_file.display()))?;
        Ok(Load {
            url: base.to_owned(),
            requests_file,
            script,
            expect: expect.to_owned(),
        })
    }

    /// Runs wrk for `duration` with `connections` connections on one thread: the machine has two cores to share between the load
    /// generator, the server and PostgreSQL, and one wrk thread saturates these servers.
    pub async fn run(&self, connections: u32, duration: Duration) -> anyhow::Result<LoadResult> {
        let mut command = tokio::process::Command::new("wrk");
        command
            .arg("-t1")
            .arg(format!("-c{connections}"))
            .arg(format!("-d{}s", duration.as_secs().max(1)))
            .args(["--timeout", "10s", "-s"])
            .arg(&self.script)
            .arg(&self.url)
            .arg("--")
            .arg(&self.requests_file)
            .arg(&self.expect)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let output = command
            .output()
            .await
            .context("running wrk (is it installed?)")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let Some(line) = stdout.lines().find_map(|l| l.strip_prefix("BENCH_JSON ")) else {
            bail!(
                "wrk printed no summary (exit {}):\n{stdout}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        };
        let raw: WrkJson =
            serde_json::from_str(line).with_context(|| format!("parsing wrk's summary: {line}"))?;
        let duration_s = raw.duration_us as f64 / 1e6;
        let ms = |us: f64| us / 1000.0;
        Ok(LoadResult {
            connections,
            requests: raw.requests,
            duration_s,
            rps: if duration_s > 0.0 {
                raw.requests as f64 / duration_s
            } else {
                0.0
            },
            ok: raw.ok,
            unexpected: raw.unexpected,
            unexpected_statuses: raw.unexpected_statuses,
            socket_errors: raw.connect_errors + raw.read_errors + raw.write_errors + raw.timeouts,
            bytes: raw.bytes,
            p50_ms: ms(raw.p50_us),
            p90_ms: ms(raw.p90_us),
            p99_ms: ms(raw.p99_us),
            p999_ms: ms(raw.p999_us),
            max_ms: ms(raw.max_us),
            mean_ms: ms(raw.mean_us),
            latency_us: raw.dist.chunks_exact(2).map(|p| (p[0], p[1])).collect(),
        })
    }
}

/// Installs wrk from Debian's packages when it is missing (the machine's own package
/// manager: the bench runs as root in CI).
pub fn ensure_wrk() -> anyhow::Result<()> {
    let present = std::process::Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if present {
        return Ok(());
    }
    if !nix::unistd::Uid::effective().is_root() {
        bail!("wrk is not installed; install it (Debian/Ubuntu: `sudo apt-get install wrk`)");
    }
    eprintln!("bench: installing wrk (apt-get)");
    let status = std::process::Command::new("sh")
        .args([
            "-c",
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk",
        ])
        .status()
        .context("running apt-get")?;
    if !status.success() {
        bail!("installing wrk with apt-get failed ({status})");
    }
    Ok(())
}

/// wrk's version line, for the report.
pub fn wrk_version() -> String {
    std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .ok()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned()
                + &String::from_utf8_lossy(&o.stderr);
            text.lines()
                .next()
                .unwrap_or_default()
                .split(" Copyright")
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
        .unwrap_or_else(|| "wrk (unknown version)".into())
}
