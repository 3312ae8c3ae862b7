//! The three servers as child processes on loopback: start, wait until healthy, read
//! their memory, stop. Children die with the driver (kill on drop, and a parent-death
//! signal should the driver itself be killed).

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};

pub struct Server {
    pub name: &'static str,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub pid: u32,
    child: tokio::process::Child,
    log: PathBuf,
}

/// A free loopback port (bound and released; nothing else on the machine races for it in
/// practice).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

impl Server {
    /// Starts `program args` with stdout/stderr to `log`, and waits for `GET /healthz`.
    pub async fn start(
        name: &'static str,
        program: &Path,
        args: &[String],
        port: u16,
        log: &Path,
    ) -> anyhow::Result<Server> {
        let out = std::fs::File::create(log).with_context(|| format!("{}", log.display()))?;
        let err = out.try_clone()?;
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        // SAFETY: prctl is async-signal-safe and touches no shared state; it runs in the
        // child between fork and exec.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let pid = child.id().context("the server exited at once")?;
        let mut server = Server {
            name,
            base: format!("http://127.0.0.1:{port}"),
            pid,
            child,
            log: log.to_path_buf(),
        };
        server.wait_healthy().await?;
        Ok(server)
    }

    async fn wait_healthy(&mut self) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let url = format!("{}/healthz", self.base);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!(
                    "{} exited during start-up ({status}):\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if let Ok(response) = client.get(&url).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{} did not become healthy:\n{}", self.name, self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Resident memory (VmRSS) in KiB.
    pub fn rss_kb(&self) -> u64 {
        rss_of(self.pid)
    }

    /// CPU time (user + system) the process has used so far, in microseconds.
    pub fn cpu_us(&self) -> u64 {
        cpu_us_of(self.pid)
    }

    /// SIGTERM (graceful), then SIGKILL after 10 s.
    pub async fn stop(mut self) {
        if let Ok(pid) = i32::try_from(self.pid) {
            let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Resident memory (VmRSS) of process `pid` in KiB; 0 once it is gone.
pub fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix("VmRSS:")?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}

/// The fields of `/proc/<pid>/stat` after the command name (so index 0 is field 3).
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; the fields after it do not.
    let (_, rest) = stat.rsplit_once(')')?;
    Some(
        rest.split_whitespace()
            .map(|f| f.parse::<u64>().unwrap_or(0))
            .collect(),
    )
}

/// CPU time (user + system) of process `pid` in microseconds, from `/proc/<pid>/stat`
/// (fields 14 and 15, in clock ticks of 1/100 s on Linux).
pub fn cpu_us_of(pid: u32) -> u64 {
    let Some(fields) = stat_fields(pid) else {
        return 0;
    };
    let ticks = |i: usize| fields.get(i).copied().unwrap_or(0);
    // Fields 14 and 15 are at indices 11 and 12.
    (ticks(11) + ticks(12)) * 10_000
}

/// As [`cpu_us_of`], plus the CPU time of its children that have exited (fields 16, 17).
pub fn cpu_us_with_children_of(pid: u32) -> u64 {
    let Some(fields) = stat_fields(pid) else {
        return 0;
    };
    let ticks = |i: usize| fields.get(i).copied().unwrap_or(0);
    (ticks(11) + ticks(12) + ticks(13) + ticks(14)) * 10_000
}

/// The parent of process `pid` (field 4).
pub fn parent_of(pid: u32) -> Option<u32> {
    stat_fields(pid)?
        .get(1)
        .and_then(|p| u32::try_from(*p).ok())
}
