//! User-space instructions per request, counted by valgrind's callgrind.
//!
//! Requests per second and CPU time on a shared two-core machine move with whatever else
//! runs (the load average was 8–16 in one full run); an instruction count does not: the
//! same binary, inputs and environment give the same count whatever the neighbours do. A
//! second instance of each server runs under callgrind with instrumentation off while it
//! starts and warms up; it is switched on (`callgrind_control`) for one wrk load per
//! scenario, then dumped. Only the server's own process is counted: not the kernel (socket
//! calls, scheduling), not PostgreSQL.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::{
    Plan, Subject,
    db::Db,
    log,
    servers::{Server, free_port},
    setup::{app_args, portcullis_args, scenarios, warmed_load},
};

/// One scenario's count on one server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstructionCount {
    pub server: String,
    pub scenario: String,
    pub requests: u64,
    /// Requests that got another status than expected (the count is then suspect).
    pub unexpected: u64,
    pub instructions: u64,
}

impl InstructionCount {
    pub fn per_request(&self) -> f64 {
        self.instructions as f64 / self.requests.max(1) as f64
    }
}

/// Whether valgrind can be run here (`benches/run` installs it when it can).
pub fn available() -> bool {
    std::process::Command::new("valgrind")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The three hot scenarios on a callgrind instance of `s`'s server.
pub async fn count(
    bins: &Path,
    db: &Db,
    work: &Path,
    logs: &Path,
    s: &Subject,
    plan: &Plan,
) -> anyhow::Result<Vec<InstructionCount>> {
    let name = s.server.name;
    let port = free_port()?;
    let url = db.url(s.db_name);
    let server_args = match name {
        "portcullis" => portcullis_args(port, &url, &[]),
        _ => app_args(port, &url),
    };
    let dumps = work.join(format!("callgrind-{name}"));
    let _ = std::fs::remove_dir_all(&dumps);
    std::fs::create_dir_all(&dumps)?;
    let mut args = vec![
        "--tool=callgrind".to_owned(),
        "--instr-atstart=no".into(),
        format!("--callgrind-out-file={}/out", dumps.display()),
        bins.join(name).display().to_string(),
    ];
    args.extend(server_args);
    let instance = Server::start(
        name,
        Path::new("valgrind"),
        &args,
        port,
        &logs.join(format!("{name}-callgrind.log")),
    )
    .await?;
    let scenarios = scenarios(s, &["anonymous", "api", "hot"]);
    let mut out = Vec::new();
    for (scenario, requests, expect) in scenarios {
        let label = format!("{name}-callgrind-{scenario}");
        let target = (instance.base.as_str(), requests.as_slice(), expect);
        let load = warmed_load(work, &label, target, plan.callgrind_connections, 2).await?;
        control(instance.pid, "--zero").await?;
        control(instance.pid, "--instr=on").await?;
        let result = load
            .run(
                plan.callgrind_connections,
                Duration::from_secs(plan.callgrind_s),
            )
            .await?;
        control(instance.pid, "--instr=off").await?;
        let dump = dump(instance.pid, &dumps).await?;
        let instructions = totals(&dump)?;
        let count = InstructionCount {
            server: name.into(),
            scenario: scenario.into(),
            requests: result.requests,
            unexpected: result.errors(),
            instructions,
        };
        log(format!(
            "  {:<10} {:<9} {:>9.0} instructions/request over {} requests",
            name,
            scenario,
            count.per_request(),
            count.requests
        ));
        out.push(count);
    }
    instance.stop().await;
    Ok(out)
}

async fn control(pid: u32, option: &str) -> anyhow::Result<()> {
    let output = tokio::process::Command::new("callgrind_control")
        .arg(option)
        .arg(pid.to_string())
        .output()
        .await
        .context("running callgrind_control")?;
    if !output.status.success() {
        bail!(
            "callgrind_control {option} {pid}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Asks for a dump and returns the file it wrote (callgrind numbers each dump).
async fn dump(pid: u32, dir: &Path) -> anyhow::Result<PathBuf> {
    let before = files(dir)?;
    control(pid, "--dump").await?;
    for _ in 0..100 {
        let written: Vec<PathBuf> = files(dir)?
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        if let Some(file) = written.into_iter().max() {
            // Written in one go, but give the writer a moment to close it.
            tokio::time::sleep(Duration::from_millis(200)).await;
            return Ok(file);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("callgrind wrote no dump in {}", dir.display())
}

fn files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    Ok(std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .collect())
}

/// The `totals:` line of a callgrind dump (instructions: the only event collected).
fn totals(file: &Path) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(file).with_context(|| format!("{}", file.display()))?;
    text.lines()
        .find_map(|line| line.strip_prefix("totals:"))
        .and_then(|value| value.trim().parse().ok())
        .with_context(|| format!("no totals in {}", file.display()))
}

/// Section 7 of the report.
pub fn section(out: &mut String, results: &crate::Results) {
    use std::fmt::Write;
    let _ = writeln!(out, "\n## 7. Instructions per request (callgrind)\n");
    if results.instructions.is_empty() {
        let _ = writeln!(out, "Not counted in this run (valgrind was not installed).");
        return;
    }
    let _ = writeln!(
        out,
        "User-space instructions each server executes per request, counted by valgrind's \
         callgrind on a second instance of each server (instrumentation switched on only for \
         the measured load: {} s at {} connections per scenario, after a warm-up). Unlike req/s \
         and CPU time, this does not move with the machine's load. It leaves out the kernel \
         (socket calls, scheduling) and PostgreSQL, and says nothing of cache misses: a count \
         at the ceiling's is the most a server's own code can do, not a promise of its rate.\n",
        results.plan.callgrind_s, results.plan.callgrind_connections
    );
    let _ = writeln!(
        out,
        "| Scenario | Server | requests | instructions/request | vs ceiling | unexpected statuses |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|");
    for scenario in ["anonymous", "api", "hot"] {
        let ceiling = results
            .instructions
            .iter()
            .find(|c| c.scenario == scenario && c.server == "ceiling")
            .map(InstructionCount::per_request);
        for count in results
            .instructions
            .iter()
            .filter(|c| c.scenario == scenario)
        {
            let label = match scenario {
                "anonymous" => "anonymous `GET /account` (303)",
                "api" => "`GET /api/me`",
                _ => "`GET /account`",
            };
            let versus = ceiling.filter(|c| *c > 0.0).map_or_else(
                || "n/a".into(),
                |c| format!("{:.2}×", count.per_request() / c),
            );
            let _ = writeln!(
                out,
                "| {label} | {} | {} | {:.0} | {versus} | {} |",
                count.server,
                count.requests,
                count.per_request(),
                count.unexpected
            );
        }
    }
}
