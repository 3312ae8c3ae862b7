//! Deployment: the real binary behind the real nginx running the shipped
//! `deploy/nginx/portcullis.conf`, a rolling restart and an upgrade under load, and
//! PgBouncer in transaction pooling mode. Everything listens on loopback only; every load
//! is bounded in time and count; every process started here is stopped by a guard, also
//! when a test fails.
//!
//! Needs nginx, openssl and pgbouncer (Debian: `apt-get install nginx openssl pgbouncer`).
//! Without them a test prints `skipped: <test>: <why>` and passes, so `cargo test` works on
//! any machine; `PORTCULLIS_REQUIRE_DEPLOY=1` (CI sets it) turns a skip into a failure.

mod nginx;
mod pgbouncer;
mod proxy;
mod rolling;

pub use nginx::{Certificate, Nginx};

use std::{
    io::{BufRead, BufReader, Write},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU16, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use reqwest::{
    Client, Response, StatusCode,
    cookie::Jar,
    header::{ACCEPT, LOCATION},
};

use tokio::task::JoinSet;

use crate::support::{BROWSER_ACCEPT, describe, hidden_field};

pub const REQUIRE_DEPLOY: &str = "PORTCULLIS_REQUIRE_DEPLOY";
const BIN: &str = env!("CARGO_BIN_EXE_portcullis");
/// The name the site is served under in these tests (`.test` is reserved, RFC 6761).
pub const SITE: &str = "portcullis.test";
/// `--public-url` of the instances behind nginx (its port is nginx's, chosen per test, and
/// not compared).
pub const PUBLIC_URL: &str = "https://portcullis.test";
pub const METRICS_TOKEN: &str = "deploy-test-metrics-token";

fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("deploy test")
        .to_owned()
}

fn deploy_required() -> bool {
    std::env::var(REQUIRE_DEPLOY).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// A missing prerequisite: says `skipped: <test>: <why>` past libtest's output capture,
/// or fails when the deployment tests are required.
pub fn skip(why: &str) {
    let test = test_name();
    assert!(
        !deploy_required(),
        "{test}: {why} — {REQUIRE_DEPLOY}=1 is set, so the deployment tests must run"
    );
    let _ = writeln!(std::io::stderr(), "skipped: {test}: {why}");
}

/// An executable on PATH or in the sbin directories (Debian puts nginx and pgbouncer in
/// /usr/sbin, which is not on every user's PATH).
pub fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The tools a test needs, or `None` after saying which are missing.
pub fn tools<const N: usize>(names: [&str; N]) -> Option<[PathBuf; N]> {
    let found = names.map(tool);
    let missing: Vec<&str> = names
        .iter()
        .zip(&found)
        .filter(|(_, path)| path.is_none())
        .map(|(name, _)| *name)
        .collect();
    if !missing.is_empty() {
        skip(&format!(
            "{} not installed (Debian: apt-get install nginx openssl pgbouncer)",
            missing.join(", ")
        ));
        return None;
    }
    Some(found.map(|path| path.expect("checked above")))
}

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A scratch directory under /tmp, removed when dropped (its logs are printed by the
/// failing assertion before that). Leftovers of killed runs are removed by the test
/// harness with the rest of `/tmp/pc-it-<dead pid>-*`.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let dir = PathBuf::from(format!(
            "/tmp/pc-it-{}-deploy-{tag}{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch directory");
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

/// A free loopback port below Linux's ephemeral range (32768–60999). An instance that is
/// restarted must get its port back; a port from the ephemeral range could meanwhile be
/// taken as the local port of one of the thousands of short connections a load opens.
pub fn free_port() -> u16 {
    let base = 20_000 + (std::process::id() % 400) as u16 * 25;
    for _ in 0..2_000 {
        let offset = NEXT_PORT.fetch_add(1, Ordering::Relaxed) % 10_000;
        let port = 20_000 + (base - 20_000 + offset) % 12_000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between 20000 and 32000");
}

/// Lets the child die with this process, even if the test run is killed (SIGKILL leaves
/// no chance for a Drop guard). Only for children that are not setuid binaries.
fn die_with_parent(command: &mut Command, signal: libc::c_int) {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec here.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Reads a child's stderr into a shared list of lines, calling `on_line` for each.
fn capture_lines(
    stream: impl std::io::Read + Send + 'static,
    lines: Arc<Mutex<Vec<String>>>,
    mut on_line: impl FnMut(&str) + Send + 'static,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            on_line(&line);
            lines.lock().expect("log lock").push(line);
        }
    });
}

/// One `portcullis serve` process on a fixed loopback port: started, stopped with SIGTERM
/// (as systemd does), and started again on the same port. Killed if dropped running.
pub struct Instance {
    pub name: &'static str,
    pub port: u16,
    args: Vec<String>,
    child: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Instance {
    pub async fn start(name: &'static str, port: u16, args: Vec<String>) -> Instance {
        let mut instance = Instance {
            name,
            port,
            args,
            child: None,
            log: Arc::new(Mutex::new(Vec::new())),
        };
        instance.spawn().await;
        instance
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// Starts the process and waits (at most a minute) until it says it is listening.
    pub async fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let mut command = Command::new(BIN);
        command
            .arg("serve")
            .arg("--bind")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(&self.args)
            .env_remove("DATABASE_URL")
            .env("NO_COLOR", "1")
            // Administrators sign in with a password alone here, as in `test_settings`.
            .env("PORTCULLIS_REQUIRE_MFA", "none")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        die_with_parent(&mut command, libc::SIGTERM);
        let mut child = command.spawn().expect("spawn portcullis serve");
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let name = self.name;
        self.log
            .lock()
            .expect("log lock")
            .push(format!("--- {name} started (pid {})", child.id()));
        capture_lines(
            child.stderr.take().expect("stderr"),
            Arc::clone(&self.log),
            move |line| {
                if line.contains("listening on http://") {
                    let _ = tx.send(());
                }
            },
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if rx.try_recv().is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                panic!(
                    "{name} exited with {status} before listening:\n{}",
                    self.log_text()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{name} did not listen within 60 s:\n{}", self.log_text());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.child = Some(child);
    }

    /// SIGTERM, then waits (at most 45 s: grace, drain timeout and some) for the exit.
    pub async fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("instance is running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let deadline = Instant::now() + Duration::from_secs(45);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} did not exit within 45 s of SIGTERM:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM and a clean exit (status 0), as a rolling restart needs.
    pub async fn stop(&mut self) {
        let status = self.terminate().await;
        assert!(
            status.success(),
            "{} exited with {status} after SIGTERM:\n{}",
            self.name,
            self.log_text()
        );
    }

    /// Waits (at most 30 s) until the instance's own `/readyz` answers 200.
    pub async fn wait_ready(&self, client: &Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = client.get(self.url("/readyz")).send().await
                && response.status() == StatusCode::OK
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready within 30 s:\n{}",
                self.name,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn log_text(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    /// Requests this instance has answered, by route, from its own `/metrics`.
    pub async fn requests_served(&self, client: &Client, route: &str) -> u64 {
        let text = client
            .get(self.url("/metrics"))
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body");
        metric_sum(&text, "http_requests_total", &format!("route=\"{route}\""))
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The sum of a Prometheus counter over the series whose labels contain `label`.
pub fn metric_sum(text: &str, name: &str, label: &str) -> u64 {
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A client for the instances themselves (health, metrics): no cookies, no proxy.
pub fn direct_client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// The arguments every instance behind nginx gets.
pub fn instance_args(database_url: &str) -> Vec<String> {
    [
        "--database-url",
        database_url,
        "--secure-cookies",
        "--trusted-proxy",
        "127.0.0.1",
        "--metrics-token",
        METRICS_TOKEN,
        // nginx passes the browser's Host on: the name the site is served under.
        "--public-url",
        PUBLIC_URL,
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Child process ids, from /proc.
pub fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// A browser going through nginx: its own loopback address and cookie jar.
pub struct Visitor {
    pub client: Client,
    pub base: String,
}

impl Visitor {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> Result<Response, String> {
        self.client
            .get(self.url(path))
            .header(ACCEPT, BROWSER_ACCEPT)
            .send()
            .await
            .map_err(|e| format!("GET {path}: {e:?}"))
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Result<Response, String> {
        self.client
            .post(self.url(path))
            .header(ACCEPT, BROWSER_ACCEPT)
            .form(form)
            .send()
            .await
            .map_err(|e| format!("POST {path}: {e:?}"))
    }

    /// The whole sign-in: form, post, `/login/complete`, landing on `/account`.
    pub async fn sign_in(&self, username: &str, password: &str) -> Result<(), String> {
        let form = self.get("/login").await?;
        expect_status(form.status(), StatusCode::OK, "GET /login")?;
        let page = form.text().await.map_err(|e| format!("GET /login: {e}"))?;
        let csrf = hidden_field(&page, "csrf").ok_or("GET /login: no csrf field")?;
        let response = self
            .post(
                "/login",
                &[
                    ("username", username),
                    ("password", password),
                    ("csrf", &csrf),
                    ("next", "/account"),
                ],
            )
            .await?;
        let complete = location(&response);
        if response.status() != StatusCode::SEE_OTHER || !complete.starts_with("/login/complete") {
            return Err(format!("POST /login: {}", describe(response).await));
        }
        let response = self.get(&complete).await?;
        if response.status() != StatusCode::SEE_OTHER || location(&response) != "/account" {
            return Err(format!("GET {complete}: {}", describe(response).await));
        }
        Ok(())
    }

    /// Signs out with the session's CSRF token (from the account page).
    pub async fn sign_out(&self) -> Result<(), String> {
        let account = self.get("/account").await?;
        expect_status(account.status(), StatusCode::OK, "GET /account")?;
        let page = account
            .text()
            .await
            .map_err(|e| format!("GET /account: {e}"))?;
        let csrf = hidden_field(&page, "csrf").ok_or("GET /account: no csrf field")?;
        let response = self.post("/logout", &[("csrf", &csrf)]).await?;
        if response.status() != StatusCode::SEE_OTHER {
            return Err(format!("POST /logout: {}", describe(response).await));
        }
        Ok(())
    }
}

pub fn location(response: &Response) -> String {
    response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn expect_status(got: StatusCode, want: StatusCode, what: &str) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: status {got}, expected {want}"))
    }
}

/// Whether a response was written by the app (it stamps every response with a request
/// id) rather than by nginx itself.
pub fn from_the_app(response: &Response) -> bool {
    response.headers().contains_key("x-request-id")
}

/// Signed-in `visitors` viewing /account as fast as they can for 5 s (after 1 s of
/// warm-up): requests a second, and the CPU time per request of each group of processes
/// (listed after the warm-up, so that connections it opened are included). For
/// measurements run by hand; bounded in time like everything here.
pub async fn measure_page_views(
    visitors: &[Visitor],
    groups: &[(&str, &dyn Fn() -> Vec<u32>)],
) -> String {
    let run = |seconds: u64, visitors: &[Visitor]| {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut tasks = JoinSet::new();
        for visitor in visitors {
            let visitor = Visitor {
                client: visitor.client.clone(),
                base: visitor.base.clone(),
            };
            tasks.spawn(async move {
                let mut views = 0u64;
                while Instant::now() < deadline {
                    let response = visitor.get("/account").await.expect("GET");
                    assert_eq!(response.status(), StatusCode::OK);
                    response.bytes().await.expect("body");
                    views += 1;
                }
                views
            });
        }
        tasks
    };
    let mut warm_up = run(1, visitors);
    while warm_up.join_next().await.is_some() {}
    let groups: Vec<(&str, Vec<u32>)> = groups
        .iter()
        .map(|(label, pids)| (*label, pids()))
        .collect();
    let group_cpu = |pids: &[u32]| pids.iter().map(|pid| cpu_seconds(*pid)).sum::<f64>();
    let before: Vec<f64> = groups.iter().map(|(_, pids)| group_cpu(pids)).collect();
    let started = Instant::now();
    let mut tasks = run(5, visitors);
    let mut views = 0;
    while let Some(n) = tasks.join_next().await {
        views += n.expect("task");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu: Vec<String> = groups
        .iter()
        .zip(before)
        .map(|((label, pids), before)| {
            format!(
                "{label} {:.0} µs",
                (group_cpu(pids) - before) * 1e6 / views as f64
            )
        })
        .collect();
    format!(
        "{views} page views in {elapsed:.1} s = {:.0}/s; CPU per request: {}",
        views as f64 / elapsed,
        cpu.join(", ")
    )
}

/// User + system CPU time of a process, from /proc (0 once it is gone).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf only reads a constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // utime and stime are fields 14 and 15 of the line: 11 and 12 after the name.
    (ticks(11) + ticks(12)) / per_second
}
