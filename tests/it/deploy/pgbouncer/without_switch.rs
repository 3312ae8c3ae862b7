//! `serve` pointed at PgBouncer in transaction pooling mode without `--db-pgbouncer`: one
//! line saying so and naming the switch, not the driver's error about its statements.

use sqlx::{Connection, PgConnection};

use super::*;
use crate::support::fresh_database;

/// Without --db-pgbouncer, through a PgBouncer that lets the `options` startup parameter
/// in (unlike the example as shipped, which refuses the connection: see above), the
/// driver's cached, named statements (`sqlx_s_1`, …) meet a server connection that another
/// client prepared its own on. `serve` stops at start and says in one line what is wrong and
/// which switch to add, instead of the driver's raw error (and does not panic).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_db_pgbouncer_serve_says_to_add_it() {
    let Some([pgbouncer_bin]) = tools(["pgbouncer"]) else {
        return;
    };
    let scratch = Scratch::new("pgbouncer-no-switch");
    let (_pool, db) = fresh_database().await;
    // One server connection, so every client gets the same one.
    let bouncer = PgBouncer::start(&pgbouncer_bin, &scratch, &database_url(&db), 1, true);
    // Another client without the switch (an earlier start, another instance) leaves its
    // first statement, `sqlx_s_1`, on it: PgBouncer keeps server connections open.
    let mut other = PgConnection::connect(&bouncer.url())
        .await
        .expect("connect through PgBouncer");
    let one: i32 = sqlx::query_scalar("SELECT $1::int4")
        .bind(1)
        .fetch_one(&mut other)
        .await
        .expect("a prepared statement");
    assert_eq!(one, 1);
    other.close().await.expect("close");

    let log = scratch.path("serve.log");
    let mut serve = portcullis(&["serve", "--bind", "127.0.0.1:0"])
        .args(["--database-url", &bouncer.url()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("create serve.log"))
        .spawn()
        .expect("run serve");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = serve.try_wait().expect("wait for serve") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = serve.kill();
            let _ = serve.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    let logs = format!("{stderr}\n--- pgbouncer\n{}", bouncer.log());
    let status = status.unwrap_or_else(|| panic!("serve still running after 60 s:\n{logs}"));
    let said: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("portcullis: "))
        .collect();
    assert!(
        !status.success() && !stderr.contains("panicked") && said.len() == 1,
        "{status}, one `portcullis: ` line expected:\n{logs}"
    );
    for words in [
        "through PgBouncer in transaction pooling mode",
        "add --db-pgbouncer (or PORTCULLIS_DB_PGBOUNCER=true)",
        "prepared statement \"sqlx_s_1\" already exists",
    ] {
        assert!(said[0].contains(words), "{words:?} missing:\n{logs}");
    }
}
