//! The private PostgreSQL cluster: the embedded default when DATABASE_URL is not set.
//!
//! Hand-written rather than `postgresql_embedded`: that crate downloads PostgreSQL on first
//! use (our machines have no such network) and listens on TCP; what we need is small —
//! find the installed server binaries, `initdb` once, run `postgres` on a Unix socket only,
//! and stop it when we exit. Several processes may use one cluster (a second `serve`, the
//! CLI beside the server): whoever finds it running joins it, and whoever leaves last
//! stops it (`release`). The server runs in its own process group, so a Ctrl-C meant for
//! one Portcullis process does not take the database from under another.
//!
//! Throw-away test clusters (`ephemeral`) are instead tied to the process that started
//! them with a parent-death signal: if the test run dies (kill -9, a crash), the kernel
//! tells PostgreSQL to shut down.

use std::{
    fs,
    io::{self, Read, Seek},
    os::unix::{
        fs::{MetadataExt, PermissionsExt},
        process::CommandExt,
    },
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::{Gid, Pid, Uid, User},
};
use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnectOptions;

/// Socket paths are limited to 107 bytes (sun_path); leave room for `/.s.PGSQL.5432`.
const MAX_SOCKET_DIR_LEN: usize = 90;
const PORT: u16 = 5432;
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long other clients must stay connected before `release` leaves the cluster running.
const RELEASE_SETTLE: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "no PostgreSQL server binaries found (looked for `initdb` and `postgres` on PATH and \
         under /usr/lib/postgresql/*/bin). Install the PostgreSQL server package \
         (Debian/Ubuntu: `apt-get install postgresql`) or set DATABASE_URL to use an existing server."
    )]
    NoBinaries,
    #[error(
        "the data directory {dir} is not usable: {reason}. Choose another with --data-dir \
         (or PORTCULLIS_DATA_DIR), or set DATABASE_URL to use an existing server."
    )]
    DataDir { dir: PathBuf, reason: String },
    #[error("`initdb` failed for {dir}: {output}")]
    Initdb { dir: PathBuf, output: String },
    #[error("PostgreSQL did not start in {dir}: {reason}\n{log_tail}")]
    Start {
        dir: PathBuf,
        reason: String,
        log_tail: String,
    },
}

#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub data_dir: PathBuf,
    /// For throw-away test clusters: skip fsync everywhere, and stop with the process that
    /// started it. Never for real data.
    pub ephemeral: bool,
}

/// The server's user: ourselves, or the unprivileged `postgres` user when we are root
/// (PostgreSQL refuses to run as root).
#[derive(Debug, Clone, Copy)]
pub(super) struct RunAs {
    uid: Uid,
    gid: Gid,
    pub(super) switch: bool,
}

#[derive(Debug)]
pub struct Cluster {
    pgdata: PathBuf,
    socket_dir: PathBuf,
    /// Present when this process started the server.
    server: Option<Server>,
}

#[derive(Debug)]
struct Server {
    pid: Pid,
    exited: mpsc::Receiver<()>,
}

impl Cluster {
    /// Starts the cluster in `options.data_dir`, creating it on first use, or joins the
    /// server already running there (another Portcullis process, or the CLI beside `serve`).
    pub fn start(options: &ClusterOptions) -> Result<Cluster, ClusterError> {
        let data_dir = absolute(&options.data_dir)?;
        let pgdata = data_dir.join("postgres");
        let socket_dir = socket_dir_for(&pgdata);
        if let Some(running) = Self::running(&pgdata, &socket_dir) {
            return Ok(running);
        }
        let bin = find_binaries().ok_or(ClusterError::NoBinaries)?;
        let run_as = run_as()?;
        prepare_dirs(&data_dir, &pgdata, &socket_dir, run_as)?;
        if !pgdata.join("PG_VERSION").exists() {
            initdb(&bin, &pgdata, run_as, options.ephemeral)?;
        }
        let server = spawn_server(&bin, &data_dir, &pgdata, &socket_dir, run_as, options)?;
        Ok(Cluster {
            pgdata,
            socket_dir,
            server: Some(server),
        })
    }

    /// The server already serving the private cluster in `data_dir`, if one is running
    /// (never starts one).
    pub fn find_running(data_dir: &Path) -> Option<Cluster> {
        let pgdata = absolute(data_dir).ok()?.join("postgres");
        let socket_dir = socket_dir_for(&pgdata);
        Self::running(&pgdata, &socket_dir)
    }

    /// A server already serving this data directory, if any.
    fn running(pgdata: &Path, socket_dir: &Path) -> Option<Cluster> {
        let pid_file = fs::read_to_string(pgdata.join("postmaster.pid")).ok()?;
        let mut lines = pid_file.lines();
        let pid: i32 = lines.next()?.trim().parse().ok()?;
        // Line 8 is the postmaster's status; "ready" once it accepts connections.
        let ready = pid_file.lines().nth(7).is_some_and(|s| s.trim() == "ready");
        let alive = kill(Pid::from_raw(pid), None).is_ok();
        let socket = socket_dir.join(format!(".s.PGSQL.{PORT}"));
        (alive && ready && socket.exists()).then(|| Cluster {
            pgdata: pgdata.to_path_buf(),
            socket_dir: socket_dir.to_path_buf(),
            server: None,
        })
    }

    /// Whether this process started the server (and will stop it).
    pub fn is_owner(&self) -> bool {
        self.server.is_some()
    }

    pub fn pgdata(&self) -> &Path {
        &self.pgdata
    }

    /// The directory holding the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// A `postgres://` URL for `database` over the Unix socket (for tools and subprocesses).
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@localhost:{PORT}/{database}?host={}",
            self.socket_dir.display()
        )
    }

    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(&self.socket_dir)
            .port(PORT)
            .username("postgres")
            .database(database)
    }

    /// Stops the server — PostgreSQL's "fast" mode: roll back open transactions,
    /// checkpoint, exit cleanly — unless other processes are still connected to it (another
    /// `serve` on the same data directory, the CLI): then the last one to leave stops it.
    /// Call after closing this process's own connections.
    ///
    /// A backend whose client has just disconnected (this process's pool, a CLI run that
    /// just ended) stays listed for a few milliseconds while it exits, so "others" must
    /// persist for [`RELEASE_SETTLE`] before the cluster is left running: without that wait,
    /// the app now and then exited leaving its PostgreSQL behind (process tests).
    pub async fn release(self) {
        let others = match self.other_clients().await {
            Ok(others) => others,
            Err(err) => {
                tracing::warn!(error = %err, "cannot ask the private cluster who else uses it; stopping it");
                0
            }
        };
        if others > 0 {
            tracing::info!(
                others,
                "other processes still use the private PostgreSQL cluster; leaving it running"
            );
            return;
        }
        tokio::task::spawn_blocking(move || self.stop()).await.ok();
    }

    /// How many other clients are connected, once any that are only leaving have left.
    async fn other_clients(&self) -> sqlx::Result<i64> {
        use sqlx::{ConnectOptions, Connection};
        let mut conn = self.connect_options("postgres").connect().await?;
        let settle = Instant::now() + RELEASE_SETTLE;
        let others = loop {
            let others: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
            )
            .fetch_one(&mut conn)
            .await?;
            if others == 0 || Instant::now() >= settle {
                break others;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        conn.close().await.ok();
        Ok(others)
    }

    /// Fast shutdown of the server, whoever started it.
    pub fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
            return;
        }
        let pid = fs::read_to_string(self.pgdata.join("postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next()?.trim().parse::<i32>().ok());
        if let Some(pid) = pid {
            let pid = Pid::from_raw(pid);
            if kill(pid, Signal::SIGINT).is_ok() {
                let deadline = Instant::now() + STOP_TIMEOUT;
                while kill(pid, None).is_ok() && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(25));
                }
            }
        }
    }
}

impl Server {
    fn stop(self) {
        if kill(self.pid, Signal::SIGINT).is_err() {
            return;
        }
        if self.exited.recv_timeout(STOP_TIMEOUT).is_err() {
            tracing::warn!("PostgreSQL did not stop in {STOP_TIMEOUT:?}; sending SIGQUIT");
            let _ = kill(self.pid, Signal::SIGQUIT);
            let _ = self.exited.recv_timeout(STOP_TIMEOUT);
        }
    }
}

pub(super) fn absolute(dir: &Path) -> Result<PathBuf, ClusterError> {
    std::path::absolute(dir).map_err(|e| ClusterError::DataDir {
        dir: dir.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The data directory itself when its path is short enough for a socket, else a short
/// directory under /tmp derived from it (so every process finds the same one).
fn socket_dir_for(pgdata: &Path) -> PathBuf {
    if pgdata.as_os_str().len() <= MAX_SOCKET_DIR_LEN {
        return pgdata.to_path_buf();
    }
    let digest = Sha256::digest(pgdata.as_os_str().as_encoded_bytes());
    let tag: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    PathBuf::from(format!("/tmp/portcullis-{tag}"))
}

struct Binaries {
    initdb: PathBuf,
    postgres: PathBuf,
}

fn find_binaries() -> Option<Binaries> {
    let on_path = |name: &str| -> Option<PathBuf> {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|candidate| candidate.is_file())
        })
    };
    if let (Some(initdb), Some(postgres)) = (on_path("initdb"), on_path("postgres")) {
        return Some(Binaries { initdb, postgres });
    }
    // Debian keeps server binaries off PATH, one directory per major version; prefer the newest.
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    versions.into_iter().find_map(|(_, bin)| {
        let (initdb, postgres) = (bin.join("initdb"), bin.join("postgres"));
        (initdb.is_file() && postgres.is_file()).then_some(Binaries { initdb, postgres })
    })
}

pub(super) fn run_as() -> Result<RunAs, ClusterError> {
    if !Uid::effective().is_root() {
        return Ok(RunAs {
            uid: Uid::effective(),
            gid: Gid::effective(),
            switch: false,
        });
    }
    match User::from_name("postgres") {
        Ok(Some(user)) => Ok(RunAs {
            uid: user.uid,
            gid: user.gid,
            switch: true,
        }),
        _ => Err(ClusterError::DataDir {
            dir: PathBuf::from("/"),
            reason: "running as root, PostgreSQL must run as an unprivileged user, and there \
                     is no `postgres` system user (install the PostgreSQL server package, or \
                     run Portcullis as an ordinary user)"
                .into(),
        }),
    }
}

/// Whether `user` may traverse (search) the directory `meta` describes.
pub(super) fn can_traverse(meta: &fs::Metadata, run_as: RunAs) -> bool {
    let mode = meta.mode();
    if meta.uid() == run_as.uid.as_raw() {
        mode & 0o100 != 0
    } else if meta.gid() == run_as.gid.as_raw() {
        mode & 0o010 != 0
    } else {
        mode & 0o001 != 0
    }
}

fn prepare_dirs(
    data_dir: &Path,
    pgdata: &Path,
    socket_dir: &Path,
    run_as: RunAs,
) -> Result<(), ClusterError> {
    let unusable = |reason: String| ClusterError::DataDir {
        dir: data_dir.to_path_buf(),
        reason,
    };
    fs::create_dir_all(data_dir).map_err(|e| unusable(format!("cannot create it: {e}")))?;
    if run_as.switch {
        // The classic trap: a checkout under a 0700 home directory. Say so before initdb
        // fails with a bare "permission denied".
        for dir in data_dir.ancestors() {
            let meta = fs::metadata(dir).map_err(|e| unusable(e.to_string()))?;
            if !can_traverse(&meta, run_as) {
                return Err(unusable(format!(
                    "PostgreSQL runs as the `postgres` user (we are root), and that user \
                     cannot enter {} (mode {:o})",
                    dir.display(),
                    meta.mode() & 0o7777
                )));
            }
        }
    }
    for dir in [pgdata, socket_dir] {
        if !dir.exists() {
            fs::create_dir_all(dir).map_err(|e| unusable(format!("{}: {e}", dir.display())))?;
        }
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| unusable(format!("{}: {e}", dir.display())))?;
        if run_as.switch {
            nix::unistd::chown(dir, Some(run_as.uid), Some(run_as.gid))
                .map_err(|e| unusable(format!("chown {}: {e}", dir.display())))?;
        }
    }
    Ok(())
}

fn command(program: &Path, run_as: RunAs, cwd: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .current_dir(cwd)
        .env("LC_ALL", "C")
        .env_remove("PGDATA");
    if run_as.switch {
        command.uid(run_as.uid.as_raw()).gid(run_as.gid.as_raw());
    }
    command
}

fn initdb(
    bin: &Binaries,
    pgdata: &Path,
    run_as: RunAs,
    ephemeral: bool,
) -> Result<(), ClusterError> {
    let cwd = pgdata.parent().unwrap_or(Path::new("/"));
    let mut cmd = command(&bin.initdb, run_as, cwd);
    cmd.arg("-D")
        .arg(pgdata)
        .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"]);
    if ephemeral {
        cmd.arg("--no-sync");
    }
    let output = cmd.output().map_err(|e| ClusterError::Initdb {
        dir: pgdata.to_path_buf(),
        output: e.to_string(),
    })?;
    if !output.status.success() {
        return Err(ClusterError::Initdb {
            dir: pgdata.to_path_buf(),
            output: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(())
}

fn spawn_server(
    bin: &Binaries,
    data_dir: &Path,
    pgdata: &Path,
    socket_dir: &Path,
    run_as: RunAs,
    options: &ClusterOptions,
) -> Result<Server, ClusterError> {
    let start_error = |reason: String, log: &Path| ClusterError::Start {
        dir: pgdata.to_path_buf(),
        reason,
        log_tail: log_tail(log),
    };
    let log_path = data_dir.join("postgres.log");
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| {
            start_error(
                format!("cannot open {}: {e}", log_path.display()),
                &log_path,
            )
        })?;
    let log_err = log
        .try_clone()
        .map_err(|e| start_error(e.to_string(), &log_path))?;
    let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);

    let mut cmd = command(&bin.postgres, run_as, data_dir);
    cmd.arg("-D")
        .arg(pgdata)
        .args(["-p", &PORT.to_string()])
        .args(["-c", "listen_addresses="])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", socket_dir.display()))
        .args(["-c", "unix_socket_permissions=0700"]);
    if options.ephemeral {
        cmd.args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=200"]);
    }
    cmd.stdin(Stdio::null()).stdout(log).stderr(log_err);
    // Its own process group: a terminal's Ctrl-C reaches Portcullis, which decides.
    cmd.process_group(0);
    if options.ephemeral {
        // SAFETY: prctl is async-signal-safe; it runs in the child after fork (and after
        // the uid switch, which would otherwise clear it) and touches no shared state.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGINT).map_err(io::Error::from)
            });
        }
    }

    // The keeper thread spawns and waits for the server: a parent-death signal (test
    // clusters) fires when the *thread* that forked the child exits, so that thread must
    // outlive it.
    let (started_tx, started_rx) = mpsc::channel();
    let (exited_tx, exited_rx) = mpsc::channel();
    thread::Builder::new()
        .name("postgres-keeper".into())
        .spawn(move || match cmd.spawn() {
            Ok(mut child) => {
                let _ = started_tx.send(Ok(child.id()));
                let _ = child.wait();
                let _ = exited_tx.send(());
            }
            Err(e) => {
                let _ = started_tx.send(Err(e));
            }
        })
        .map_err(|e| start_error(e.to_string(), &log_path))?;
    let pid = match started_rx.recv() {
        Ok(Ok(pid)) => Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX)),
        Ok(Err(e)) => return Err(start_error(e.to_string(), &log_path)),
        Err(e) => return Err(start_error(e.to_string(), &log_path)),
    };
    let server = Server {
        pid,
        exited: exited_rx,
    };

    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if server.exited.try_recv().is_ok() {
            let tail = log_tail_since(&log_path, log_start);
            return Err(ClusterError::Start {
                dir: pgdata.to_path_buf(),
                reason: "the server exited during start-up".into(),
                log_tail: tail,
            });
        }
        if Cluster::running(pgdata, socket_dir).is_some() {
            return Ok(server);
        }
        if Instant::now() > deadline {
            server.stop();
            return Err(start_error(
                format!("not ready after {START_TIMEOUT:?}"),
                &log_path,
            ));
        }
        thread::sleep(Duration::from_millis(25));
    }
}

fn log_tail(path: &Path) -> String {
    log_tail_since(path, 0)
}

/// The last lines PostgreSQL wrote (since `offset`), for error messages.
fn log_tail_since(path: &Path, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = fs::File::open(path) {
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let start = offset.max(len.saturating_sub(4096));
        if file.seek(io::SeekFrom::Start(start)).is_ok() {
            let _ = file.read_to_string(&mut text);
        }
    }
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(10)..];
    tail.iter()
        .map(|line| format!("  postgres: {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_data_dirs_get_a_short_stable_socket_dir() {
        let long = PathBuf::from(format!("/{}", "x".repeat(120)));
        let a = socket_dir_for(&long);
        assert_eq!(a, socket_dir_for(&long));
        assert!(a.as_os_str().len() < 40, "{a:?}");
        let short = PathBuf::from("/srv/portcullis/postgres");
        assert_eq!(socket_dir_for(&short), short);
    }
}
