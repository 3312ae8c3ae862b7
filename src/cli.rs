//! `portcullis user …`: account management from the command line, on the same database
//! selection as `serve` (and whether or not the server is running). Every change goes
//! through the same domain functions as the admin pages (`accounts::admin`), so the same
//! rules hold, under the same lock; the actor in the audit trail is "cli".

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, bail};
use sqlx::PgPool;

use crate::{
    accounts::{self, admin},
    audit::Actor,
    auth::{password::PasswordHasher, throttle},
    config::UserCommand,
    display::display_time,
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
    let actor = Actor::cli();
    match command {
        UserCommand::Create { username, role } => {
            let password = read_password(&format!("Password for {username}: "))?;
            let hasher = PasswordHasher::start(1)?;
            let user = admin::create(
                pool,
                &hasher,
                &actor,
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
            let user = accounts::find(pool, &username).await?;
            admin::set_role(pool, &actor, user.id, role).await?;
            writeln!(
                out,
                "{} is now {role} (effective on their next request)",
                user.username
            )?;
        }
        UserCommand::SetPassword { username } => {
            let user = accounts::find(pool, &username).await?;
            let password = read_password(&format!("New password for {}: ", user.username))?;
            let hasher = PasswordHasher::start(1)?;
            let password = accounts::check_new_password(
                &hasher,
                &password,
                min_password_chars,
                Some(&user.username),
            )
            .await??;
            let hash = hasher.hash(password).await?;
            let changed = admin::reset_password(pool, &actor, user.id, &hash).await?;
            writeln!(
                out,
                "password changed for {}; {} session(s) signed out",
                user.username, changed.sessions_revoked
            )?;
        }
        UserCommand::Disable { username } => {
            let user = accounts::find(pool, &username).await?;
            let changed = admin::disable(pool, &actor, user.id).await?;
            writeln!(
                out,
                "{} disabled; {} session(s) signed out",
                user.username, changed.sessions_revoked
            )?;
        }
        UserCommand::Enable { username } => {
            let user = accounts::find(pool, &username).await?;
            admin::enable(pool, &actor, user.id).await?;
            writeln!(out, "{} enabled", user.username)?;
        }
        UserCommand::Unlock { username } => {
            let key = accounts::Username::key_of(&username);
            let cleared = throttle::unlock(pool, &actor, &key).await?;
            writeln!(
                out,
                "{username}: {}",
                if cleared {
                    "sign-in blocks lifted"
                } else {
                    "no sign-in block to lift"
                }
            )?;
        }
        UserCommand::List => {
            let all = accounts::list(pool).await?;
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
                    .map(display_time)
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
