//! `portcullis user …`: account management from the command line, on the same database
//! selection as `serve` (and whether or not the server is running). Every change goes
//! through the same domain functions as the admin pages (`accounts::admin`), so the same
//! rules hold, under the same lock; the actor in the audit trail is "cli". Nobody types a
//! password for someone else: `invite` and `reset-link` print a one-time link where the
//! person chooses their own (`accounts::links`); `create` is only the operator's own first
//! administrator.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, bail};
use sqlx::PgPool;

use crate::{
    accounts::{self, admin},
    audit::Actor,
    auth::{Role, password::PasswordHasher, throttle},
    config::{LinkArgs, UserCommand, site_url},
    display::display_time,
};

const INVITE_INSTEAD: &str = "users exist already: `user create` only makes the first \
     administrator. Invite others with `portcullis user invite NAME` (they choose their own \
     password), or send a user a new password link with `portcullis user reset-link NAME`";

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

/// The address of a link `issue` made, on the site `link` names (or the bind address).
fn link_url(link: &LinkArgs, issued: &accounts::links::Issued) -> url::Url {
    issued.url(&site_url(link.public_url.as_ref(), link.bind))
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
            if role != Role::Admin {
                bail!(
                    "the first user is an administrator; create it without --role, then invite \
                     others with `portcullis user invite NAME --role {role}`"
                );
            }
            // Refused before the prompt when users exist: nobody types a password for
            // someone else (they get a link and choose their own).
            if accounts::count(pool).await? > 0 {
                bail!("{}", INVITE_INSTEAD);
            }
            let password = read_password(&format!("Password for {username}: "))?;
            let hasher = PasswordHasher::start(1)?;
            let user = admin::create_first(
                pool,
                &hasher,
                &actor,
                &username,
                &password,
                min_password_chars,
            )
            .await
            .context("cannot create the user")?
            .ok_or_else(|| anyhow::anyhow!(INVITE_INSTEAD))?;
            writeln!(out, "created {} ({})", user.username, user.role)?;
        }
        UserCommand::Invite {
            username,
            role,
            link,
        } => {
            let issued = admin::invite(pool, &actor, &username, role, link.link_lifetime)
                .await
                .context("cannot invite the user")?;
            writeln!(
                out,
                "invited {} ({role}). Send them this link to choose their password \
                 (it works once, until {}):",
                issued.username,
                display_time(issued.expires_at)
            )?;
            writeln!(out, "{}", link_url(&link, &issued))?;
        }
        UserCommand::ResetLink { username, link } => {
            let user = accounts::find(pool, &username).await?;
            let issued = admin::reset_link(pool, &actor, user.id, link.link_lifetime).await?;
            let replaced = if issued.voided > 0 {
                " Their older link no longer works."
            } else {
                ""
            };
            writeln!(
                out,
                "Send {} this link to choose a new password (it works once, until {}; using \
                 it signs them out everywhere).{replaced}",
                issued.username,
                display_time(issued.expires_at)
            )?;
            writeln!(out, "{}", link_url(&link, &issued))?;
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
                } else if user.invited {
                    "invited"
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
