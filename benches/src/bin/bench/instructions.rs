//! User-space instructions per request, counted by valgrind's callgrind.
//!
//! Requests per second and CPU time on a shared two-core machine move with whatever else
//! runs (the load average was 8–16 in one full run); an instruction count does not: the
//! same binary, inputs and environment give the same count whatever the neighbours do. A
//! second instance of each server runs under callgrind with instrumentation off while it
//! starts and warms up; it is switched on (`callgrind_control`) for one wrk load per
//! scenario, then dumped. Only the server's own process is counted: not the kernel (socket
//! calls, scheduling), not PostgreSQL.
//!
//! Callgrind also simulates the CPU's first-level caches and branch predictor on the same
//! run (`--cache-sim`, `--branch-sim`): the code and data lines a request misses, and the
//! branches it mispredicts. Those are counts of the server's own code on one simulated core
//! with nothing else running (no kernel, no wrk, no PostgreSQL evicting its lines), so they
//! measure its footprint, not the misses a loaded machine sees; the instruction count says
//! how much work a request is, these say why the same work can take longer.

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
    /// Simulated misses and mispredictions (absent in reports from before they were counted).
    #[serde(default)]
    pub misses: Option<Misses>,
}

/// What callgrind's cache and branch simulation counted over the same requests.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Misses {
    /// First-level instruction cache misses (`I1mr`): 64-byte lines of code fetched.
    pub code_lines: u64,
    /// First-level data cache misses, reads and writes (`D1mr` + `D1mw`).
    pub data_lines: u64,
    /// Mispredicted conditional and indirect branches (`Bcm` + `Bim`).
    pub branches: u64,
}

impl InstructionCount {
    pub fn per_request(&self) -> f64 {
        self.per_request_of(self.instructions)
    }

    fn per_request_of(&self, count: u64) -> f64 {
        count as f64 / self.requests.max(1) as f64
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
        "--cache-sim=yes".into(),
        "--branch-sim=yes".into(),
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
        let totals = totals(&dump)?;
        let count = InstructionCount {
            server: name.into(),
            scenario: scenario.into(),
            requests: result.requests,
            unexpected: result.errors(),
            instructions: totals.event("Ir")?,
            misses: Some(Misses {
                code_lines: totals.event("I1mr")?,
                data_lines: totals.event("D1mr")? + totals.event("D1mw")?,
                branches: totals.event("Bcm")? + totals.event("Bim")?,
            }),
        };
        let misses = count.misses.map_or_else(String::new, |m| {
            format!(
                "; misses/request: {:.0} code lines, {:.0} data lines, {:.0} branches",
                count.per_request_of(m.code_lines),
                count.per_request_of(m.data_lines),
                count.per_request_of(m.branches)
            )
        });
        log(format!(
            "  {:<10} {:<9} {:>9.0} instructions/request over {} requests{misses}",
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

/// A callgrind dump's `totals:` line, by the event names of its `events:` line.
struct Totals {
    events: Vec<(String, u64)>,
}

impl Totals {
    fn event(&self, name: &str) -> anyhow::Result<u64> {
        self.events
            .iter()
            .find(|(event, _)| event == name)
            .map(|(_, count)| *count)
            .with_context(|| format!("callgrind counted no {name}"))
    }
}

fn totals(file: &Path) -> anyhow::Result<Totals> {
    let text = std::fs::read_to_string(file).with_context(|| format!("{}", file.display()))?;
    let line = |prefix: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(prefix))
            .with_context(|| format!("no {prefix} line in {}", file.display()))
    };
    let names = line("events:")?.split_whitespace();
    let counts = line("totals:")?
        .split_whitespace()
        .map(str::parse::<u64>)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("unreadable totals in {}", file.display()))?;
    Ok(Totals {
        events: names.map(str::to_owned).zip(counts).collect(),
    })
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
         (socket calls, scheduling) and PostgreSQL. On the same run callgrind simulates the \
         CPU's first-level caches (64-byte lines) and its branch predictor, on one core with \
         nothing else running: the lines of code and data a request misses, and the branches \
         it mispredicts. Those measure a server's footprint, not the misses of a loaded \
         machine, where the kernel, wrk and PostgreSQL evict more; a missed line costs as much \
         as a dozen instructions or more.\n",
        results.plan.callgrind_s, results.plan.callgrind_connections
    );
    let _ = writeln!(
        out,
        "| Scenario | Server | requests | instructions/request | vs ceiling | code lines missed \
         | vs ceiling | data lines missed | vs ceiling | branches mispredicted | vs ceiling \
         | unexpected statuses |"
    );
    let _ = writeln!(
        out,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for scenario in ["anonymous", "api", "hot"] {
        let ceiling = results
            .instructions
            .iter()
            .find(|c| c.scenario == scenario && c.server == "ceiling");
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
            // A figure per request, and its ratio to the ceiling's.
            let figure = |of: &dyn Fn(&InstructionCount) -> Option<u64>| {
                let Some(mine) = of(count).map(|n| count.per_request_of(n)) else {
                    return "n/a | n/a".to_owned();
                };
                let versus = ceiling
                    .and_then(|c| Some(c.per_request_of(of(c)?)))
                    .filter(|c| *c > 0.0)
                    .map_or_else(|| "n/a".into(), |c| format!("{:.2}×", mine / c));
                format!("{mine:.0} | {versus}")
            };
            let _ = writeln!(
                out,
                "| {label} | {} | {} | {} | {} | {} | {} | {} |",
                count.server,
                count.requests,
                figure(&|c| Some(c.instructions)),
                figure(&|c| c.misses.map(|m| m.code_lines)),
                figure(&|c| c.misses.map(|m| m.data_lines)),
                figure(&|c| c.misses.map(|m| m.branches)),
                count.unexpected
            );
        }
    }
}
