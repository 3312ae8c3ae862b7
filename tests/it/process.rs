//! The real binary: the embedded default (private cluster) start/stop/restart, and the CLI.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use portcullis::auth::Role;
use portcullis::{accounts::admin, audit::Actor};
use reqwest::StatusCode;

use crate::support::*;

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

fn scratch_dir(tag: &str) -> PathBuf {
    let dir = PathBuf::from(format!(
        "/tmp/pc-it-{}-{tag}{}",
        std::process::id(),
        NEXT_DIR.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
    /// Copies the server's stderr into the captured log; ends when the server exits.
    log_reader: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Starts `serve` on the private cluster in `dir` and waits for "listening on".
    fn start(dir: &Path) -> Server {
        Self::start_with(&["--data-dir", &dir.display().to_string()], &[]).0
    }

    /// Starts `serve` with extra arguments and environment; also returns every line it
    /// writes to stderr (the log), as it writes them.
    pub(crate) fn start_with(
        args: &[&str],
        env: &[(&str, &str)],
    ) -> (Server, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        let mut all = vec!["serve", "--bind", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut command = portcullis(&all);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = std::sync::Arc::clone(&lines);
        let log_reader = std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().expect("lock").push(line.clone());
                if !sent && let Some(at) = line.find("listening on http://") {
                    let address: String = line[at + "listening on ".len()..]
                        .chars()
                        .take_while(|c| !c.is_whitespace() && *c != '"')
                        .collect();
                    let _ = tx.send(Ok(address));
                    sent = true;
                } else if !sent {
                    let _ = tx.send(Err(line));
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut log = Vec::new();
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Ok(base)) => {
                    let log_reader = Some(log_reader);
                    return (
                        Server {
                            child,
                            base,
                            log_reader,
                        },
                        lines,
                    );
                }
                Ok(Err(line)) => log.push(line),
                Err(_) => {
                    let _ = child.kill();
                    panic!("serve did not start:\n{}", log.join("\n"));
                }
            }
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub(crate) fn stop(self) {
        self.stop_with(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(30));
    }

    /// Sends `signal`, then waits for a clean exit and the end of its log: at most `within`.
    fn stop_with(mut self, signal: nix::sys::signal::Signal, within: Duration) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "serve exited with {status}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not stop within {within:?} of {signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Lines still in the pipe when the process exited are captured once the reader
        // reaches the end of it, so the log a test reads afterwards is complete.
        let Some(reader) = self.log_reader.take() else {
            return;
        };
        while !reader.is_finished() {
            assert!(
                Instant::now() < deadline,
                "serve's log stayed open {within:?} after {signal}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        reader.join().expect("log reader");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn cluster_running(dir: &Path) -> bool {
    dir.join("postgres/postmaster.pid").exists()
}

async fn sign_in_works(base: &str, username: &str, password: &str) -> bool {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let page = client
        .get(format!("{base}/login"))
        .send()
        .await
        .expect("GET /login")
        .text()
        .await
        .expect("body");
    let csrf = hidden_field(&page, "csrf").expect("csrf");
    let response = client
        .post(format!("{base}/login"))
        .form(&[
            ("username", username),
            ("password", password),
            ("csrf", &csrf),
        ])
        .send()
        .await
        .expect("POST /login");
    response.status() == StatusCode::SEE_OTHER
}

#[tokio::test]
async fn the_embedded_default_starts_stops_with_the_app_and_keeps_its_data() {
    let dir = scratch_dir("embedded");
    let dir_arg = dir.display().to_string();
    let server = Server::start(&dir);
    assert!(
        cluster_running(&dir),
        "the private cluster runs while the app does"
    );
    assert_eq!(
        reqwest::get(format!("{}/readyz", server.base))
            .await
            .expect("GET")
            .status(),
        StatusCode::OK
    );

    // The CLI joins the running cluster.
    let (ok, out, err) = cli(
        &[
            "user",
            "create",
            "carol",
            "--role",
            "admin",
            "--data-dir",
            &dir_arg,
        ],
        "a long password of hers\n",
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("created carol (admin)"), "{out}");
    assert!(sign_in_works(&server.base, "carol", "a long password of hers").await);

    server.stop();
    assert!(
        !cluster_running(&dir),
        "the cluster stops when the app does"
    );

    // With the server down, the CLI starts the cluster for its own run and stops it again.
    let (ok, out, err) = cli(&["user", "list", "--data-dir", &dir_arg], "");
    assert!(ok, "{out}{err}");
    assert!(out.contains("carol") && out.contains("admin"), "{out}");
    assert!(!cluster_running(&dir));

    // Data survives a restart.
    let server = Server::start(&dir);
    assert!(sign_in_works(&server.base, "carol", "a long password of hers").await);
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unusable_data_dir_is_one_clear_message() {
    let (ok, _, err) = cli(&["user", "list", "--data-dir", "/proc/portcullis"], "");
    assert!(!ok);
    assert!(
        err.contains("data directory") && err.contains("DATABASE_URL"),
        "{err}"
    );
    assert!(
        err.lines().filter(|l| !l.trim().is_empty()).count() <= 2,
        "{err}"
    );

    if nix::unistd::Uid::effective().is_root() {
        // The classic trap: a directory the `postgres` user cannot enter.
        let locked = scratch_dir("locked");
        std::fs::create_dir_all(&locked).expect("mkdir");
        std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .expect("chmod");
        let inside = locked.join("data").display().to_string();
        let (ok, _, err) = cli(&["user", "list", "--data-dir", &inside], "");
        assert!(!ok);
        assert!(
            err.contains("`postgres` user") && err.contains("cannot enter"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&locked);
    }
}

#[tokio::test]
async fn the_cli_manages_users_on_the_same_database_as_the_app() {
    let app = TestApp::spawn().await;
    let url = database_url(&app.db_name);
    let db = ["--database-url", url.as_str()];
    let run = |args: &[&str], stdin: &str| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&db);
        cli(&all, stdin)
    };

    // Nobody types a password for someone else: Dora is invited and chooses her own.
    let (ok, _, err) = run(&["user", "create", "Dora", "--role", "editor"], "");
    assert!(!ok && err.contains("user invite"), "{err}");
    let (ok, out, err) = run(&["user", "invite", "Dora", "--role", "editor"], "");
    assert!(ok && out.contains("invited Dora (editor)"), "{out}{err}");
    let link = out.lines().last().unwrap_or_default().trim().to_owned();
    crate::links::use_link(&app, &link, "a fine long password").await;
    let (ok, _, err) = run(&["user", "invite", "dora"], "");
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, _, err) = run(&["user", "invite", "bad name"], "");
    assert!(!ok && err.contains("no spaces"), "{err}");
    let (ok, _, err) = run(&["user", "set-role", "nobody", "admin"], "");
    assert!(!ok && err.contains("no user named nobody"), "{err}");
    let (ok, _, err) = run(&["user", "set-role", "dora", "root"], "");
    assert!(!ok && err.contains("invalid value"), "{err}");

    // A signed-in session follows every change on its next request.
    let browser = app.client();
    let response = app
        .post_login(&browser, "dora", "a fine long password", "")
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.get(&browser, "/reports").await.status(), StatusCode::OK);

    let (ok, out, _) = run(&["user", "set-role", "dora", "member"], "");
    assert!(
        ok && out.contains("dora is now member") || out.contains("Dora is now member"),
        "{out}"
    );
    assert_eq!(
        app.get(&browser, "/reports").await.status(),
        StatusCode::FORBIDDEN
    );

    let (ok, out, _) = run(&["user", "list"], "");
    assert!(
        ok && out.contains("Dora") && out.contains("member"),
        "{out}"
    );

    let (ok, out, _) = run(&["user", "disable", "dora"], "");
    assert!(ok && out.contains("1 session(s) signed out"), "{out}");
    assert_login_redirect(
        app.get(&browser, "/account").await,
        "revoked",
        Some("/account"),
    )
    .await;
    let response = app
        .post_login(&app.client(), "dora", "a fine long password", "")
        .await;
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "a disabled user cannot sign in"
    );

    let (ok, _, _) = run(&["user", "enable", "dora"], "");
    assert!(ok);
    app.post_login(&browser, "dora", "a fine long password", "")
        .await;
    assert_eq!(app.get(&browser, "/account").await.status(), StatusCode::OK);

    let (ok, out, err) = run(&["user", "reset-link", "dora"], "");
    assert!(
        ok && out.contains("signs them out everywhere"),
        "{out}{err}"
    );
    let link = out.lines().last().unwrap_or_default().trim().to_owned();
    crate::links::use_link(&app, &link, "a brand new password").await;
    assert_login_redirect(
        app.get(&browser, "/account").await,
        "revoked",
        Some("/account"),
    )
    .await;
    let response = app
        .post_login(&app.client(), "dora", "a fine long password", "")
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = app
        .post_login(&app.client(), "dora", "a brand new password", "")
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);

    // Users created by the app's own code and by the CLI are the same kind of account.
    app.create_user("frank", Role::Admin).await;
    let (ok, out, _) = run(&["user", "list"], "");
    assert!(ok && out.contains("frank"), "{out}");
    // The last enabled administrator cannot be demoted or disabled from here either.
    for args in [
        &["user", "set-role", "frank", "editor"][..],
        &["user", "disable", "frank"][..],
    ] {
        let (ok, _, err) = run(args, "");
        assert!(
            !ok && err.contains("last enabled administrator"),
            "{args:?}: {err}"
        );
    }
    // Every change made here is in the audit trail, by "cli".
    let events: Vec<String> =
        sqlx::query_scalar("SELECT event FROM audit_events WHERE username = 'cli' ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .expect("events");
    assert_eq!(
        events,
        [
            "user_created",
            "password_link_issued",
            "role_changed",
            "user_disabled",
            "user_enabled",
            "password_link_issued"
        ],
        "refused commands record nothing"
    );
}

#[test]
fn help_describes_the_commands() {
    let output = portcullis(&["--help"]).output().expect("run");
    let text = String::from_utf8_lossy(&output.stdout);
    for word in [
        "serve",
        "user",
        "--bind",
        "--data-dir",
        "--idle-timeout",
        "--absolute-timeout",
        "--secure-cookies",
    ] {
        assert!(text.contains(word), "--help lacks {word}:\n{text}");
    }
    let output = portcullis(&["user", "--help"]).output().expect("run");
    let text = String::from_utf8_lossy(&output.stdout);
    for word in [
        "create",
        "invite",
        "reset-link",
        "set-role",
        "disable",
        "enable",
        "list",
    ] {
        assert!(text.contains(word), "user --help lacks {word}:\n{text}");
    }
}

/// The real binary at its most verbose log level, text and JSON: passwords, session
/// cookies, CSRF tokens and one-time link tokens never appear; JSON lines carry the request id.
#[tokio::test]
async fn logs_never_contain_passwords_cookies_or_csrf_tokens() {
    let app = TestApp::spawn().await;
    let secret = "my very secret passphrase 2026";
    let url = database_url(&app.db_name);
    for format in ["text", "json"] {
        let username = format!("logger-{format}");
        admin::create(
            &app.pool,
            &app.hasher,
            &Actor::cli(),
            &username,
            secret,
            Role::Member,
            8,
        )
        .await
        .expect("create");
        let (server, log) = Server::start_with(
            &["--database-url", &url, "--log-format", format],
            &[("RUST_LOG", "trace,hyper=debug,h2=debug")],
        );
        // A client with a cookie jar the test can read: the cookies it holds are the ones
        // the logs must not contain.
        let client = app.client();
        let site = format!("{}/", server.base);
        let cookie_value = |name: &str| {
            client
                .cookie(&site, name)
                .and_then(|pair| pair.split_once('=').map(|(_, value)| value.to_owned()))
        };
        let page = client
            .get(format!("{}/login", server.base))
            .send()
            .await
            .expect("GET")
            .text()
            .await
            .expect("body");
        let login_csrf = hidden_field(&page, "csrf").expect("csrf");
        let mut cookies = vec![(
            "login CSRF cookie",
            cookie_value(app.settings.csrf_cookie_name()).expect("the sign-in form's CSRF cookie"),
        )];
        for password in ["a wrong secret phrase", secret] {
            client
                .post(format!("{}/login", server.base))
                .form(&[
                    ("username", username.as_str()),
                    ("password", password),
                    ("csrf", &login_csrf),
                ])
                .send()
                .await
                .expect("POST");
        }
        cookies.push((
            "session cookie",
            cookie_value(app.settings.session_cookie_name()).expect("signed in: a session cookie"),
        ));
        let page = client
            .get(format!("{}/account", server.base))
            .send()
            .await
            .expect("GET")
            .text()
            .await
            .expect("body");
        assert!(
            page.contains("logger"),
            "signed in: {page}\n{}",
            log.lock().expect("lock").join("\n")
        );
        let session_csrf = hidden_field(&page, "csrf").expect("csrf");
        let new = "another secret phrase here";
        client
            .post(format!("{}/account/password", server.base))
            .form(&[
                ("csrf", session_csrf.as_str()),
                ("current_password", secret),
                ("new_password", new),
                ("confirm_password", new),
            ])
            .send()
            .await
            .expect("POST");
        // Changing the password gave this browser a new session id; it works, so the
        // cookie checked below is a live one.
        cookies.push((
            "session cookie after the password change",
            cookie_value(app.settings.session_cookie_name()).expect("still signed in"),
        ));
        let me = client
            .get(format!("{}/api/me", server.base))
            .send()
            .await
            .expect("GET");
        assert_eq!(me.status(), StatusCode::OK, "{}", describe(me).await);
        // A one-time password link, opened: its token is never logged (nor the cookie that
        // carries it on).
        let user = portcullis::accounts::find(&app.pool, &username)
            .await
            .expect("user");
        let issued = admin::reset_link(&app.pool, &Actor::cli(), user.id, time::Duration::hours(1))
            .await
            .expect("a link");
        let link = issued.url(&url::Url::parse(&site).expect("site"));
        let token = link
            .query_pairs()
            .find(|(name, _)| name == "token")
            .map(|(_, value)| value.into_owned())
            .expect("token");
        let visitor = app.client();
        let opened = visitor.get(link.as_str()).send().await.expect("GET");
        assert_eq!(
            opened.status(),
            StatusCode::SEE_OTHER,
            "{}",
            describe(opened).await
        );
        let form = visitor
            .get(format!("{}/password/new", server.base))
            .send()
            .await
            .expect("GET");
        assert_eq!(form.status(), StatusCode::OK);
        server.stop();
        let text = log.lock().expect("lock").join("\n");
        assert!(text.contains("signed in"), "{format}: the capture works");
        for (what, needle) in [
            ("password", secret),
            ("wrong password", "a wrong secret phrase"),
            ("new password", new),
            ("login CSRF token", login_csrf.as_str()),
            ("session CSRF token", session_csrf.as_str()),
            ("one-time link's token", token.as_str()),
        ] {
            assert!(!text.contains(needle), "{format} logs contain the {what}");
        }
        for (what, value) in &cookies {
            assert!(
                value.len() >= 16 && !text.contains(value.as_str()),
                "{format} logs contain the {what} ({value:?})"
            );
        }
        if format == "json" {
            let request_lines: Vec<serde_json::Value> = text
                .lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .filter(|line| line["message"] == "signed in")
                .collect();
            assert!(!request_lines.is_empty(), "JSON lines parse");
            for line in request_lines {
                // The outermost span of every line within a request carries its id.
                let id = line["spans"][0]["request_id"].as_str().map(str::len);
                assert_eq!(id, Some(16), "{line}");
            }
        }
    }
}

/// Span directives in `RUST_LOG` (`[request]=debug`) select what is logged within requests:
/// the server then gives each request a real span for them to match, and its debug lines
/// name the request as every line within one does.
#[tokio::test]
async fn span_directives_in_rust_log_select_the_lines_within_requests() {
    let (pool, db) = fresh_database().await;
    pool.close().await;
    let url = database_url(&db);
    let (server, log) = Server::start_with(
        &["--database-url", &url],
        &[("RUST_LOG", "info,[request]=debug")],
    );
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(format!("{}/account", server.base))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    // The line is written after the answer: wait for it a little.
    let deadline = Instant::now() + Duration::from_secs(10);
    let finished = loop {
        let found = log
            .lock()
            .expect("lock")
            .iter()
            .find(|line| line.contains("finished processing request"))
            .cloned();
        match found {
            Some(line) => break line,
            None if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            None => panic!(
                "no request's debug line in:\n{}",
                log.lock().expect("lock").join("\n")
            ),
        }
    };
    assert!(
        finished.contains(" DEBUG request{request_id="),
        "{finished}"
    );
    assert!(finished.contains("status=303"), "{finished}");
    // Outside requests the level stays `info`: no debug lines there.
    let lines = log.lock().expect("lock").clone();
    for line in &lines {
        assert!(
            !line.contains(" DEBUG ") || line.contains(" DEBUG request{"),
            "{line}"
        );
    }
}

/// A first start on an empty database prints a working one-time setup link.
#[tokio::test]
async fn a_first_start_prints_a_setup_link() {
    let (pool, db) = fresh_database().await;
    pool.close().await;
    let url = database_url(&db);
    let (server, log) = Server::start_with(&["--database-url", &url], &[]);
    let link = log
        .lock()
        .expect("lock")
        .iter()
        .find_map(|line| {
            line.trim()
                .strip_prefix("http://")
                .filter(|l| l.contains("/setup?token="))
                .map(|l| format!("http://{l}"))
        })
        .unwrap_or_else(|| {
            panic!(
                "no setup link in:\n{}",
                log.lock().expect("lock").join("\n")
            )
        });
    let response = reqwest::get(&link).await.expect("GET");
    assert_eq!(response.status(), StatusCode::OK, "{link}");
    assert!(
        response
            .text()
            .await
            .expect("body")
            .contains("Set up Portcullis")
    );
    server.stop();
}

/// `serve --demo`: refused where it would be unsafe; otherwise three accounts whose
/// passwords are printed once and change on every start, and a banner on every page.
#[tokio::test]
async fn demo_mode_is_local_only_and_prints_its_accounts() {
    let (pool, db) = fresh_database().await;
    pool.close().await;
    let url = database_url(&db);
    for extra in [
        &["--bind", "0.0.0.0:0"][..],
        &["--bind", "127.0.0.1:0", "--secure-cookies"][..],
    ] {
        let mut args = vec!["serve", "--demo", "--database-url", url.as_str()];
        args.extend_from_slice(extra);
        let output = portcullis(&args).output().expect("run");
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{extra:?} must be refused");
        assert!(
            err.contains("--demo is for trying Portcullis on this machine"),
            "{err}"
        );
    }
    let mut previous_admin_password = None;
    for round in 0..2 {
        let (server, log) = Server::start_with(&["--database-url", &url, "--demo"], &[]);
        let lines = log.lock().expect("lock").clone();
        let password_of = |name: &str| -> String {
            lines
                .iter()
                .find_map(|line| {
                    let mut words = line.split_whitespace();
                    (words.next() == Some(name))
                        .then(|| words.nth(1).map(str::to_owned))
                        .flatten()
                })
                .unwrap_or_else(|| panic!("no {name} account printed:\n{}", lines.join("\n")))
        };
        let admin = password_of("admin");
        for name in ["member", "editor"] {
            assert!(
                sign_in_works(&server.base, name, &password_of(name)).await,
                "{name}"
            );
        }
        assert!(sign_in_works(&server.base, "admin", &admin).await);
        let home = reqwest::get(format!("{}/", server.base))
            .await
            .expect("GET")
            .text()
            .await
            .expect("body");
        assert!(home.contains("Demo mode."), "{home}");
        if let Some(old) = previous_admin_password.replace(admin) {
            assert!(
                !sign_in_works(&server.base, "admin", &old).await,
                "round {round}: old password still works"
            );
        }
        server.stop();
    }
}

/// Two `serve` processes on one data directory share its private cluster; it stops when
/// the last of them does, not the first.
#[tokio::test]
async fn a_second_serve_joins_the_private_cluster_and_the_last_one_stops_it() {
    let dir = scratch_dir("shared");
    let dir_arg = dir.display().to_string();
    let first = Server::start(&dir);
    let second = Server::start(&dir);
    let (ok, out, err) = cli(
        &["user", "create", "sharer", "--data-dir", &dir_arg],
        "a long shared password here\n",
    );
    assert!(ok, "{out}{err}");
    assert!(sign_in_works(&first.base, "sharer", "a long shared password here").await);
    assert!(sign_in_works(&second.base, "sharer", "a long shared password here").await);
    first.stop();
    assert!(
        cluster_running(&dir),
        "the second server still uses the cluster"
    );
    assert!(sign_in_works(&second.base, "sharer", "a long shared password here").await);
    second.stop();
    assert!(!cluster_running(&dir), "the last one out stops it");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `serve --no-migrate` refuses a schema older than it needs, saying what to run;
/// `portcullis migrate` brings it up to date. A database migrated by a newer build (an
/// unknown migration) is accepted: old instances keep running during a rolling upgrade.
#[tokio::test]
async fn no_migrate_refuses_an_old_schema_and_tolerates_a_newer_one() {
    let (pool, db) = fresh_database_unmigrated().await;
    let url = database_url(&db);
    let output = portcullis(&[
        "serve",
        "--no-migrate",
        "--bind",
        "127.0.0.1:0",
        "--database-url",
        &url,
    ])
    .output()
    .expect("run");
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(err.contains("run `portcullis migrate`"), "{err}");
    let output = portcullis(&["migrate", "--database-url", &url])
        .output()
        .expect("run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // A newer build's expand migration, applied before this build restarts.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'from a newer build', true, '\\x00', 0)",
    )
    .execute(&pool)
    .await
    .expect("insert");
    sqlx::query("CREATE TABLE newer_build_table (id int)")
        .execute(&pool)
        .await
        .expect("expand");
    let server = Server::start_with(&["--no-migrate", "--database-url", &url], &[]).0;
    assert_eq!(
        reqwest::get(format!("{}/readyz", server.base))
            .await
            .expect("GET")
            .status(),
        StatusCode::OK
    );
    server.stop();
    let server = Server::start_with(&["--database-url", &url], &[]).0;
    server.stop();
}

/// Instances starting at once against a new database all migrate it, and each migration
/// runs once: sqlx serializes them with a PostgreSQL advisory lock.
#[tokio::test]
async fn instances_migrating_at_once_apply_each_migration_once() {
    let (pool, db) = fresh_database_unmigrated().await;
    let url = database_url(&db);
    let children: Vec<Child> = (0..4)
        .map(|_| {
            portcullis(&["migrate", "--database-url", &url])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn migrate")
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().expect("wait");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .expect("migrations dir")
        .count();
    let (rows, versions): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT version) FROM _sqlx_migrations WHERE success",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!((rows, versions), (migrations as i64, migrations as i64));
}

/// `config check` prints the effective configuration with secrets masked and warns about
/// unsafe combinations (exit status 1), including a database running with fsync off.
#[tokio::test]
async fn config_check_masks_secrets_and_warns() {
    let output = portcullis(&[
        "config",
        "check",
        "--bind",
        "127.0.0.1:3000",
        "--secure-cookies",
        "--trusted-proxy",
        "127.0.0.1",
        "--public-url",
        "https://login.example.com",
        "--metrics-token",
        "a-long-random-metrics-token-value",
        "--data-dir",
        "/tmp/portcullis-config-check-none",
    ])
    .output()
    .expect("run");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        text.contains("No warnings.") && !text.contains("a-long-random-metrics-token-value"),
        "{text}"
    );

    let output = portcullis(&[
        "config",
        "check",
        "--bind",
        "0.0.0.0:3000",
        "--password-min-length",
        "8",
        "--trusted-proxy",
        "0.0.0.0/0",
        "--database-url",
        "postgres://app:hunter2secret@127.0.0.1:1/none",
    ])
    .output()
    .expect("run");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert!(
        !text.contains("hunter2secret") && text.contains("app:****@"),
        "{text}"
    );
    for warning in [
        "--secure-cookies is off while listening on 0.0.0.0",
        "--public-url is not set",
        "below 15",
        "/0 range",
        "cannot connect",
    ] {
        assert!(text.contains(warning), "missing {warning:?}: {text}");
    }

    // The test cluster runs with fsync off; a real deployment must not.
    let app = TestApp::spawn().await;
    let fsync: String = sqlx::query_scalar("SHOW fsync")
        .fetch_one(&app.pool)
        .await
        .expect("fsync");
    let url = database_url(&app.db_name);
    let output = portcullis(&["config", "check", "--database-url", &url])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(text.contains("fsync=off"), fsync == "off", "{text}");

    // Through PgBouncer the app cannot set statement_timeout, so the role or database must.
    let pgbouncer_check = || {
        let output = portcullis(&["config", "check", "--database-url", &url, "--db-pgbouncer"])
            .output()
            .expect("run");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let text = pgbouncer_check();
    assert!(text.contains("no statement_timeout"), "{text}");
    sqlx::query(&format!(
        "ALTER DATABASE \"{}\" SET statement_timeout = '5s'",
        app.db_name
    ))
    .execute(&app.pool)
    .await
    .expect("alter database");
    let text = pgbouncer_check();
    assert!(!text.contains("statement_timeout"), "{text}");
}

/// Ctrl-C (SIGINT) in a terminal stops at once: the drain grace is for load balancers, which
/// a SIGTERM tells to move on; a developer's Ctrl-C should not wait for it.
#[tokio::test]
async fn ctrl_c_skips_the_drain_grace_that_sigterm_keeps() {
    let (pool, db) = fresh_database().await;
    pool.close().await;
    let url = database_url(&db);
    let args = ["--database-url", url.as_str(), "--drain-grace", "60s"];
    let (server, _) = Server::start_with(&args, &[]);
    // Well within the 60 s grace.
    server.stop_with(nix::sys::signal::Signal::SIGINT, Duration::from_secs(30));

    // SIGTERM keeps serving through the grace, saying it is going.
    let (server, _) = Server::start_with(&args, &[]);
    let pid = nix::unistd::Pid::from_raw(server.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    // Until the signal is handled /readyz still says 200; every answer until the 503 must
    // come from a server that is still serving.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = reqwest::get(format!("{}/readyz", server.base))
            .await
            .expect("still serving during the grace");
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still answered {} 10 s after SIGTERM",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
