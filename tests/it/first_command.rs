//! The README's first command, tried as a new user would: as root, in a checkout in root's
//! own (0700) home directory, with no flag. PostgreSQL runs as the `postgres` user, which
//! cannot enter `./data` there, so the data goes to `/var/lib/portcullis` (here a scratch
//! directory in its place, via `PORTCULLIS_ROOT_DATA_DIR`) and stays there across runs.

use std::{io::Write, os::unix::fs::PermissionsExt, process::Stdio};

use crate::support::portcullis;

#[test]
fn as_root_in_a_private_home_the_default_data_dir_moves_where_postgres_can_reach() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: only root meets this (the cluster then runs as `postgres`)");
        return;
    }
    let base = std::path::PathBuf::from(format!("/tmp/pc-first-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let home = base.join("root-home");
    let checkout = home.join("portcullis");
    std::fs::create_dir_all(&checkout).expect("mkdir");
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let fallback = base.join("var-lib-portcullis");
    let run = |args: &[&str], stdin: &str| {
        let mut child = portcullis(args)
            .current_dir(&checkout)
            .env_remove("PORTCULLIS_DATA_DIR")
            .env("PORTCULLIS_ROOT_DATA_DIR", &fallback)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("stdin");
        let output = child.wait_with_output().expect("wait");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(
        &["user", "create", "first", "--role", "admin"],
        "a long password of mine\n",
    );
    assert!(ok, "the first command works: {out}{err}");
    assert!(
        err.contains("cannot enter") && err.contains(&fallback.display().to_string()),
        "it says where the data went and why: {err}"
    );
    assert!(fallback.join("postgres/PG_VERSION").exists());
    assert!(
        !checkout.join("data").exists(),
        "nothing half-made in ./data"
    );
    // The next run finds the same data.
    let (ok, out, err) = run(&["user", "list"], "");
    assert!(ok && out.contains("first"), "{out}{err}");
    // An explicit --data-dir is the operator's choice: no fallback, a clear error.
    let (ok, _, err) = run(&["user", "list", "--data-dir", "data"], "");
    assert!(!ok && err.contains("cannot enter"), "{err}");
    let _ = std::fs::remove_dir_all(&base);
}
