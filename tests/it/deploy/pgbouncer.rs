//! PgBouncer in transaction pooling mode (Debian 12's 1.18: no prepared statement
//! tracking), running the shipped `deploy/pgbouncer/pgbouncer.ini`: the core flows with
//! `--db-pgbouncer` (sign-in, page views under concurrency, an admin's role change, the
//! CLI, sign-out), and the failure without it.

mod without_switch;

use std::str::FromStr;

use reqwest::StatusCode;
use sqlx::postgres::PgConnectOptions;
use tokio::task::JoinSet;

use super::*;
use crate::support::{database_url, fresh_database_unmigrated, portcullis};

const ADMIN_PASSWORD: &str = "a long enough password 2026";
/// The database name PgBouncer hands out (its real name is the test database's).
const ALIAS: &str = "portcullis";

/// pgbouncer in the foreground, as the `postgres` system user when we are root (it refuses
/// to run as root). Stopped when dropped.
struct PgBouncer {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
}

impl PgBouncer {
    /// Renders the shipped example for `database` (a `postgres://` URL of the real server)
    /// and starts it; waits until it accepts connections. With `ignore_options`, it also
    /// ignores the `options` startup parameter, as operators are often told to make it do
    /// (the example warns against it): a client sending one is then let in.
    fn start(
        pgbouncer: &Path,
        dir: &Scratch,
        database: &str,
        pool_size: u32,
        ignore_options: bool,
    ) -> PgBouncer {
        let server = PgConnectOptions::from_str(database).expect("database URL");
        let port = free_port();
        let user = server.get_username().to_owned();
        let dbname = server.get_database().expect("database name").to_owned();
        let shipped = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/pgbouncer/pgbouncer.ini"
        ))
        .expect("read deploy/pgbouncer/pgbouncer.ini");
        let replacements = [
            (
                "portcullis =",
                format!(
                    "{ALIAS} = host={} port={} dbname={dbname} user={user}",
                    // A Unix socket directory when there is one (the test cluster's).
                    server.get_socket().map_or_else(
                        || server.get_host().to_owned(),
                        |dir| dir.display().to_string()
                    ),
                    server.get_port()
                ),
            ),
            (
                "default_pool_size =",
                format!("default_pool_size = {pool_size}"),
            ),
            ("listen_addr =", "listen_addr = 127.0.0.1".to_owned()),
            ("listen_port =", format!("listen_port = {port}")),
            (
                "auth_file =",
                format!("auth_file = {}", dir.path("userlist.txt").display()),
            ),
            (
                "logfile =",
                format!("logfile = {}", dir.path("pgbouncer.log").display()),
            ),
            (
                "pidfile =",
                format!("pidfile = {}", dir.path("pgbouncer.pid").display()),
            ),
        ];
        let mut used = [false; 7];
        let mut rendered = String::new();
        let mut lines = shipped.lines();
        while let Some(line) = lines.next() {
            rendered.push_str(line);
            rendered.push('\n');
            if line.trim() != "; PLACEHOLDER" {
                continue;
            }
            let next = lines.next().expect("a line after each placeholder mark");
            let index = replacements
                .iter()
                .position(|(key, _)| next.starts_with(key))
                .unwrap_or_else(|| panic!("no test rendering for placeholder line {next:?}"));
            used[index] = true;
            rendered.push_str(&replacements[index].1);
            rendered.push('\n');
        }
        assert!(
            used.iter().all(|u| *u),
            "a placeholder is gone from the example"
        );
        if ignore_options {
            let shipped = "\nignore_startup_parameters = extra_float_digits\n";
            assert!(
                rendered.contains(shipped),
                "{shipped:?} is gone from the example"
            );
            rendered = rendered.replace(
                shipped,
                "\nignore_startup_parameters = extra_float_digits,options\n",
            );
        }
        std::fs::write(dir.path("pgbouncer.ini"), rendered).expect("write ini");
        std::fs::write(dir.path("userlist.txt"), format!("\"{user}\" \"\"\n")).expect("write");
        let mut command = Command::new(pgbouncer);
        command
            .arg(dir.path("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if nix::unistd::Uid::effective().is_root() {
            let postgres = nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .expect("PgBouncer refuses to run as root: needs the `postgres` user");
            // It writes its log and pid file there.
            nix::unistd::chown(&dir.0, Some(postgres.uid), Some(postgres.gid)).expect("chown");
            command
                .uid(postgres.uid.as_raw())
                .gid(postgres.gid.as_raw());
        }
        die_with_parent(&mut command, libc::SIGTERM);
        let child = command.spawn().expect("start pgbouncer");
        let mut started = PgBouncer {
            child: Some(child),
            dir: dir.0.clone(),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(Ok(Some(status))) = started.child.as_mut().map(Child::try_wait) {
                panic!("pgbouncer exited with {status}:\n{}", started.log());
            }
            assert!(
                Instant::now() < deadline,
                "pgbouncer did not listen within 10 s:\n{}",
                started.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        started
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{ALIAS}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Runs the CLI with `stdin`; returns (success, stdout + stderr).
fn cli(args: &[&str], stdin: &str) -> (bool, String) {
    let (ok, out, err) = crate::support::cli(args, stdin);
    (ok, out + &err)
}

/// A browser talking to an instance directly (plain HTTP, its own cookie jar).
fn browser(instance: &Instance) -> Visitor {
    Visitor {
        client: Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
        base: instance.base(),
    }
}

/// A migrated test database, a PgBouncer in front of it, and two users created through
/// PgBouncer with the CLI.
async fn setup(
    pgbouncer_bin: &Path,
    scratch: &Scratch,
    pool_size: u32,
) -> (sqlx::PgPool, String, PgBouncer) {
    let (pool, db) = fresh_database_unmigrated().await;
    let direct = database_url(&db);
    // Migrations go to PostgreSQL directly...
    let (ok, out) = cli(&["migrate", "--database-url", &direct], "");
    assert!(ok, "{out}");
    let bouncer = PgBouncer::start(pgbouncer_bin, scratch, &direct, pool_size, false);
    // ...and are refused through PgBouncer, saying why.
    let (ok, out) = cli(
        &[
            "migrate",
            "--db-pgbouncer",
            "--database-url",
            &bouncer.url(),
        ],
        "",
    );
    assert!(!ok && out.contains("advisory lock"), "{out}");
    // The first administrator types their own password; everyone else is invited.
    let (ok, out) = cli(
        &[
            "user",
            "create",
            "boss",
            "--db-pgbouncer",
            "--database-url",
            &bouncer.url(),
        ],
        &format!("{ADMIN_PASSWORD}\n"),
    );
    assert!(
        ok && out.contains("created boss"),
        "{out}\n{}",
        bouncer.log()
    );
    let (ok, out) = cli(
        &[
            "user",
            "invite",
            "mia",
            "--db-pgbouncer",
            "--database-url",
            &bouncer.url(),
        ],
        "",
    );
    assert!(
        ok && out.contains("invited mia"),
        "{out}\n{}",
        bouncer.log()
    );
    // Mia chooses her password with the link printed (here through the domain, as the
    // page does: no server runs yet).
    let token = out
        .lines()
        .find_map(|line| line.split_once("token=").map(|(_, token)| token.trim()))
        .expect("a link in the output");
    let hasher = portcullis::auth::password::PasswordHasher::start(1).expect("hasher");
    let hash = hasher.hash(ADMIN_PASSWORD.to_owned()).await.expect("hash");
    portcullis::accounts::links::consume(&pool, token, &hash, Default::default())
        .await
        .expect("consume")
        .expect("a live link");
    (pool, db, bouncer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_core_flows_work_through_pgbouncer_in_transaction_mode() {
    let Some([pgbouncer_bin]) = tools(["pgbouncer"]) else {
        return;
    };
    let scratch = Scratch::new("pgbouncer");
    // Fewer server connections than the instance has client connections: every query
    // may land on a server connection another client used last.
    let (pool, _db, bouncer) = setup(&pgbouncer_bin, &scratch, 3).await;
    let mut args = vec![
        "--db-pgbouncer".to_owned(),
        "--database-url".to_owned(),
        bouncer.url(),
        "--db-pool-size".to_owned(),
        "10".to_owned(),
    ];
    args.extend(["--metrics-token".to_owned(), METRICS_TOKEN.to_owned()]);
    let mut instance = Instance::start("via-pgbouncer", free_port(), args).await;
    let logs =
        |instance: &Instance| format!("{}\n--- pgbouncer\n{}", instance.log_text(), bouncer.log());

    // An administrator signs in and makes mia an editor through the admin page.
    let boss = browser(&instance);
    boss.sign_in("boss", ADMIN_PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&instance)));
    let admin_page = boss.get("/admin").await.expect("GET /admin");
    assert_eq!(admin_page.status(), StatusCode::OK);
    let mia_id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE username = 'mia'")
        .fetch_one(&pool)
        .await
        .expect("mia");
    let page = boss
        .get("/account")
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    let csrf = hidden_field(&page, "csrf").expect("csrf");
    let response = boss
        .post(
            &format!("/admin/users/{mia_id}/role"),
            &[("csrf", csrf.as_str()), ("role", "editor")],
        )
        .await
        .expect("POST role");
    assert_eq!(
        location(&response),
        format!("/admin/users/{mia_id}?done=role_changed"),
        "{}",
        describe(response).await
    );
    let mia = browser(&instance);
    mia.sign_in("mia", ADMIN_PASSWORD)
        .await
        .expect("mia signs in");
    assert_eq!(
        mia.get("/reports").await.expect("GET").status(),
        StatusCode::OK
    );

    // Page views from many clients at once, with sign-ins and sign-outs among them, for
    // three seconds: not one may fail.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut load = JoinSet::new();
    for n in 0..12 {
        let visitor = if n % 2 == 0 {
            Visitor {
                client: boss.client.clone(),
                base: boss.base.clone(),
            }
        } else {
            Visitor {
                client: mia.client.clone(),
                base: mia.base.clone(),
            }
        };
        load.spawn(async move {
            let mut failures = Vec::new();
            let mut views = 0u32;
            while Instant::now() < deadline {
                match visitor.get("/account").await {
                    Ok(response) if response.status() == StatusCode::OK => views += 1,
                    Ok(response) => failures.push(describe(response).await),
                    Err(e) => failures.push(e),
                }
            }
            (views, failures)
        });
    }
    let cycler = browser(&instance);
    let mut cycles = 0;
    while Instant::now() < deadline {
        cycler
            .sign_in("mia", ADMIN_PASSWORD)
            .await
            .expect("sign in");
        cycler.sign_out().await.expect("sign out");
        cycles += 1;
    }
    let (mut views, mut failures) = (0, Vec::new());
    while let Some(result) = load.join_next().await {
        let (v, f) = result.expect("load task");
        views += v;
        failures.extend(f);
    }
    assert!(
        failures.is_empty(),
        "{} of {} page views failed; first: {}\n{}",
        failures.len(),
        views as usize + failures.len(),
        failures[0],
        logs(&instance)
    );
    assert!(views > 100 && cycles > 0, "{views} views, {cycles} cycles");

    // Sign out; a graceful stop writes the last audit events through PgBouncer too.
    boss.sign_out().await.expect("boss signs out");
    mia.sign_out().await.expect("mia signs out");
    instance.stop().await;
    let events: Vec<(String, i64)> = sqlx::query_as(
        "SELECT event, count(*) FROM audit_events \
         WHERE event IN ('sign_in', 'sign_out', 'role_changed', 'user_created') \
         GROUP BY event ORDER BY event",
    )
    .fetch_all(&pool)
    .await
    .expect("audit");
    let signs = 2 + cycles;
    assert_eq!(
        events,
        [
            ("role_changed".to_owned(), 1),
            ("sign_in".to_owned(), signs),
            ("sign_out".to_owned(), signs),
            ("user_created".to_owned(), 2),
        ]
    );

    // Without --db-pgbouncer, PgBouncer 1.18 refuses the connection outright (its
    // startup options carry statement_timeout); the switch is what makes it work.
    let output = portcullis(&["serve", "--bind", "127.0.0.1:0", "--no-migrate"])
        .args(["--database-url", &bouncer.url()])
        .output()
        .expect("run serve");
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && err.contains("unsupported startup parameter"),
        "{err}"
    );
}

/// Prints what `--db-pgbouncer` costs on the hot path (an authenticated page view: one
/// query). Not a pass/fail test; run by hand, ideally in release mode:
/// `cargo test --release --test it deploy::pgbouncer::measure -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: prints figures, asserts nothing"]
async fn measure_the_hot_path_cost_of_pgbouncer_mode() {
    let Some([pgbouncer_bin]) = tools(["pgbouncer"]) else {
        return;
    };
    let scratch = Scratch::new("pgbouncer-cost");
    let (pool, db, bouncer) = setup(&pgbouncer_bin, &scratch, 10).await;
    let direct = database_url(&db);
    let through = bouncer.url();
    let modes: [(&str, Vec<&str>, bool); 3] = [
        (
            "direct, statement cache (default)",
            vec!["--database-url", &direct],
            false,
        ),
        (
            "direct, --db-pgbouncer (no cache)",
            vec!["--db-pgbouncer", "--database-url", &direct],
            false,
        ),
        (
            "through PgBouncer, --db-pgbouncer",
            vec!["--db-pgbouncer", "--database-url", &through],
            true,
        ),
    ];
    for (name, args, via_bouncer) in modes {
        let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        let mut instance = Instance::start("measured", free_port(), args).await;
        // PostgreSQL: its postmaster's children (the backends serving the pools).
        let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .expect("backend pid");
        let postmaster = parent_of(backend as u32);
        let (portcullis, pgbouncer) = (instance.pid(), bouncer.pid());
        let portcullis = move || vec![portcullis];
        let pgbouncer = move || vec![pgbouncer];
        let postgres = move || children_of(postmaster);
        let mut groups: Vec<(&str, &dyn Fn() -> Vec<u32>)> = vec![("Portcullis", &portcullis)];
        if via_bouncer {
            groups.push(("PgBouncer", &pgbouncer));
        }
        groups.push(("PostgreSQL", &postgres));
        let mut visitors = Vec::new();
        for _ in 0..8 {
            let visitor = browser(&instance);
            visitor
                .sign_in("mia", ADMIN_PASSWORD)
                .await
                .expect("sign in");
            visitors.push(visitor);
        }
        let figures = measure_page_views(&visitors, &groups).await;
        let _ = writeln!(std::io::stderr(), "{name}: {figures}");
        instance.stop().await;
    }
}

/// A process's parent, from /proc.
fn parent_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// The driver as `--db-pgbouncer` configures it, through PgBouncer with two server
/// connections for twelve client connections: every query gets its own answer (no Bind
/// on a statement another client prepared), and failing queries leave nothing behind that
/// later ones trip over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_pgbouncer_every_query_runs_its_own_statement() {
    let Some([pgbouncer_bin]) = tools(["pgbouncer"]) else {
        return;
    };
    let scratch = Scratch::new("pgbouncer-driver");
    let (_pool, db, bouncer) = setup(&pgbouncer_bin, &scratch, 2).await;
    drop(db);
    let options = PgConnectOptions::from_str(&bouncer.url())
        .expect("url")
        .statement_cache_capacity(0)
        .extra_float_digits(None);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(12)
        .connect_with(options)
        .await
        .expect("connect through PgBouncer");
    let mut clients = JoinSet::new();
    for client in 0..12i64 {
        let pool = pool.clone();
        clients.spawn(async move {
            let mut conn = pool.acquire().await.expect("connection");
            for n in 0..150i64 {
                if n % 10 == 0 {
                    // Fails in Execute, after its Parse and Bind.
                    let failed = sqlx::query_scalar::<_, i64>("SELECT 1 / $1::int8")
                        .bind(0i64)
                        .fetch_one(&mut *conn)
                        .await;
                    assert!(failed.is_err(), "division by zero succeeded");
                    continue;
                }
                // Two different statements with the same parameter types: a Bind that
                // landed on the other one would answer wrongly, not fail.
                let value = client * 1_000 + n;
                let (sql, want) = if n % 2 == 0 {
                    ("SELECT $1::int8 * 2, $2::text", value * 2)
                } else {
                    ("SELECT $1::int8 + 7, $2::text", value + 7)
                };
                let (got, tag): (i64, String) = sqlx::query_as(sql)
                    .bind(value)
                    .bind(format!("client {client}"))
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap_or_else(|e| panic!("client {client} query {n}: {e}"));
                assert_eq!((got, tag), (want, format!("client {client}")), "{sql}");
            }
        });
    }
    while let Some(result) = clients.join_next().await {
        if let Err(panic) = result {
            panic!("{panic}\n--- pgbouncer\n{}", bouncer.log());
        }
    }
    pool.close().await;
}
