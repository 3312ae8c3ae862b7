//! `portcullis user …`: account management from the command line, on the same database
//! selection as `serve` (and whether or not the server is running).

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, bail};
use sqlx::PgPool;

use crate::{
    auth::{password::PasswordHasher, users},
    config::UserCommand,
};

/// Reads a password: prompted twice without echo on a terminal, else one line of stdin.
fn read_password(prompt: &str) -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(prompt)?;
        let second = rpassword::prompt_password("Repeat it: ")?;
        if first != second {
            bail!("the two passwords differ");
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

pub async fn run(
    pool: &PgPool,
    command: UserCommand,
    min_password_chars: usize,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match command {
        UserCommand::Create { username, role } => {
            let password = read_password(&format!("Password for {username}: "))?;
            let hasher = PasswordHasher::start(1)?;
            let user = users::create(
                pool,
                &hasher,
                &username,
                &password,
                role,
                min_password_chars,
            )
            .await
            .context("cannot create the user")?;
            writeln!(out, "created {} ({})", user.username, user.role)?;
        }
        UserCommand::SetRole { username, role } => {
            let user = users::find(pool, &username).await?;
            users::set_role(pool, user.id, role).await?;
            writeln!(
                out,
                "{} is now {role} (effective on their next request)",
                user.username
            )?;
        }
        UserCommand::SetPassword { username } => {
            let user = users::find(pool, &username).await?;
            let password = read_password(&format!("New password for {}: ", user.username))?;
            let password = users::check_new_password(&password, min_password_chars)?;
            let hasher = PasswordHasher::start(1)?;
            let hash = hasher.hash(password).await?;
            let mut tx = pool.begin().await?;
            users::set_password_hash(&mut *tx, user.id, &hash).await?;
            let ended = users::revoke_sessions(&mut *tx, user.id, None, "password_changed").await?;
            tx.commit().await?;
            writeln!(
                out,
                "password changed for {}; {ended} session(s) signed out",
                user.username
            )?;
        }
        UserCommand::Disable { username } => {
            let user = users::find(pool, &username).await?;
            let ended = users::disable(pool, user.id).await?;
            writeln!(
                out,
                "{} disabled; {ended} session(s) signed out",
                user.username
            )?;
        }
        UserCommand::Enable { username } => {
            let user = users::find(pool, &username).await?;
            users::set_disabled(pool, user.id, false).await?;
            writeln!(out, "{} enabled", user.username)?;
        }
        UserCommand::List => {
            let all = users::list(pool).await?;
            writeln!(
                out,
                "{:<24} {:<7} {:<9} last sign-in",
                "username", "role", "status"
            )?;
            for user in all {
                let status = if user.disabled_at.is_some() {
                    "disabled"
                } else {
                    "enabled"
                };
                let last = user
                    .last_sign_in_at
                    .map(crate::web::display_time)
                    .unwrap_or_else(|| "never".into());
                writeln!(
                    out,
                    "{:<24} {:<7} {:<9} {last}",
                    user.username,
                    user.role.as_str(),
                    status
                )?;
            }
        }
    }
    Ok(())
}
