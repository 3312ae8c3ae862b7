//! `serve --demo` resets the passwords of `member`, `editor` and `admin`: it must only ever
//! do that to a database it provisioned itself.

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use portcullis::{
    accounts::admin,
    audit::Actor,
    auth::{Role, password::PasswordHasher},
};

use crate::support::*;

/// How `serve --demo` ended: `Some(stderr)` if it exited with a failure, `None` if it started
/// serving (it is stopped then) or succeeded.
fn demo_refusal(url: &str) -> Option<String> {
    let mut child = portcullis(&[
        "serve",
        "--demo",
        "--bind",
        "127.0.0.1:0",
        "--database-url",
        url,
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn serve --demo");
    let stderr = child.stderr.take().expect("stderr");
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().expect("lock").push(line);
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        let started = lines
            .lock()
            .expect("lock")
            .iter()
            .any(|line| line.contains("listening on http://"));
        if started || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = reader.join();
    let text = lines.lock().expect("lock").join("\n");
    match status {
        Some(status) if !status.success() => Some(text),
        _ => {
            eprintln!("serve --demo started:\n{text}");
            None
        }
    }
}

async fn admin_hash(pool: &sqlx::PgPool) -> String {
    sqlx::query_scalar("SELECT password_hash FROM users WHERE username_key = 'admin'")
        .fetch_one(pool)
        .await
        .expect("admin's hash")
}

/// Pointed at a database of real people, `--demo` refuses to start (one line, exit status
/// 1) and leaves their `admin` alone; so it does with a database whose only accounts carry
/// the demo names but were made by an operator. An empty database it provisions and marks,
/// and starts again on (`process::demo_mode_is_local_only_and_prints_its_accounts`).
#[tokio::test]
async fn demo_mode_refuses_a_database_it_did_not_provision() {
    let hasher = PasswordHasher::start(1).expect("hasher");
    let create = |pool: sqlx::PgPool, name: &'static str, role: Role| {
        let hasher = hasher.clone();
        async move {
            admin::create(&pool, &hasher, &Actor::cli(), name, PASSWORD, role, 8)
                .await
                .unwrap_or_else(|e| panic!("create {name}: {e}"));
        }
    };

    let (pool, db) = fresh_database().await;
    create(pool.clone(), "admin", Role::Admin).await;
    create(pool.clone(), "alice", Role::Member).await;
    let before = admin_hash(&pool).await;
    let said = demo_refusal(&database_url(&db))
        .expect("--demo must refuse a database of real users, not reset their admin");
    let said: Vec<&str> = said
        .lines()
        .filter(|line| line.starts_with("portcullis: "))
        .collect();
    assert!(
        said.len() == 1 && said[0].contains("--demo") && said[0].contains("alice"),
        "one line naming the switch and an account that is not a demo account: {said:?}"
    );
    assert_eq!(
        admin_hash(&pool).await,
        before,
        "admin's password is untouched"
    );

    let (pool, db) = fresh_database().await;
    create(pool.clone(), "admin", Role::Admin).await;
    let before = admin_hash(&pool).await;
    let said = demo_refusal(&database_url(&db))
        .expect("--demo must refuse demo-named accounts it did not create");
    assert!(said.contains("not created by --demo"), "{said}");
    assert_eq!(
        admin_hash(&pool).await,
        before,
        "admin's password is untouched"
    );
}
