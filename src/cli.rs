//! `portcullis user …`: account management from the command line, on the same database
//! selection as `serve` (and whether or not the server is running).

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, bail};
use sqlx::PgPool;

use crate::{
    audit::{self, AuditEvent, RequestMeta},
    auth::{Role, password::PasswordHasher, users},
    config::UserCommand,
};
use serde_json::{Value, json};

/// Records a command-line change in the audit trail (the actor is "cli").
async fn record(pool: &PgPool, event: &'static str, target: &str, detail: Value) {
    let event = AuditEvent::new(event, RequestMeta::default())
        .username("cli")
        .target(target)
        .detail(detail);
    if let Err(err) = audit::write_now(pool, event).await {
        eprintln!("warning: the change was made but could not be written to the audit log: {err}");
    }
}

/// Whether `user` is the only enabled administrator (who must not be demoted or disabled).
async fn is_last_admin(pool: &PgPool, user: &users::UserRow) -> anyhow::Result<bool> {
    if user.role != Role::Admin || user.disabled_at.is_some() {
        return Ok(false);
    }
    let others = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM users WHERE role = 'admin' AND disabled_at IS NULL AND id <> $1"#,
        user.id
    )
    .fetch_one(pool)
    .await?;
    Ok(others == 0)
}

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
            record(
                pool,
                "user_created",
                &user.username,
                json!({ "role": user.role }),
            )
            .await;
            writeln!(out, "created {} ({})", user.username, user.role)?;
        }
        UserCommand::SetRole { username, role } => {
            let user = users::find(pool, &username).await?;
            if role != Role::Admin && is_last_admin(pool, &user).await? {
                bail!(
                    "{} is the last enabled administrator; make another user an administrator first",
                    user.username
                );
            }
            users::set_role(pool, user.id, role).await?;
            record(
                pool,
                "role_changed",
                &user.username,
                json!({ "from": user.role, "to": role }),
            )
            .await;
            writeln!(
                out,
                "{} is now {role} (effective on their next request)",
                user.username
            )?;
        }
        UserCommand::SetPassword { username } => {
            let user = users::find(pool, &username).await?;
            let password = read_password(&format!("New password for {}: ", user.username))?;
            let password =
                users::check_new_password(&password, min_password_chars, Some(&user.username))?;
            let hasher = PasswordHasher::start(1)?;
            let hash = hasher.hash(password).await?;
            let mut tx = pool.begin().await?;
            users::set_password_hash(&mut *tx, user.id, &hash).await?;
            let ended = users::revoke_sessions(&mut *tx, user.id, None, "password_changed").await?;
            tx.commit().await?;
            record(
                pool,
                "password_reset",
                &user.username,
                json!({ "sessions_revoked": ended }),
            )
            .await;
            writeln!(
                out,
                "password changed for {}; {ended} session(s) signed out",
                user.username
            )?;
        }
        UserCommand::Disable { username } => {
            let user = users::find(pool, &username).await?;
            if is_last_admin(pool, &user).await? {
                bail!(
                    "{} is the last enabled administrator; make another user an administrator first",
                    user.username
                );
            }
            let ended = users::disable(pool, user.id).await?;
            record(
                pool,
                "user_disabled",
                &user.username,
                json!({ "sessions_revoked": ended }),
            )
            .await;
            writeln!(
                out,
                "{} disabled; {ended} session(s) signed out",
                user.username
            )?;
        }
        UserCommand::Enable { username } => {
            let user = users::find(pool, &username).await?;
            users::set_disabled(pool, user.id, false).await?;
            record(pool, "user_enabled", &user.username, json!({})).await;
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
