//! The `portcullis` binary, for tests of the command line and of `serve` as a process.

use std::{
    io::Write,
    process::{Command, Stdio},
};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// The `portcullis` binary with `args`, in a clean environment: no inherited
/// `DATABASE_URL`, no colours, info logs.
pub fn portcullis(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("DATABASE_URL")
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        // Administrators sign in with a password alone here, as in `test_settings`.
        .env("PORTCULLIS_REQUIRE_MFA", "none");
    command
}

/// Runs the CLI with `stdin`; returns (success, stdout, stderr).
pub fn cli(args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = portcullis(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the CLI");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let output = child.wait_with_output().expect("CLI output");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
