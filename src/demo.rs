//! `serve --demo`: three accounts with fresh random passwords, printed once, so a newcomer
//! can try every 401/403 case within a minute. Local only (see `Settings::from_args`), and
//! only on a database it provisioned itself (see `provision`).

use rand::Rng;
use sqlx::{PgPool, Postgres, Transaction};

use crate::{
    accounts::revoke_sessions,
    auth::{Role, password::PasswordHasher},
};

pub const ACCOUNTS: [(&str, Role); 3] = [
    ("member", Role::Member),
    ("editor", Role::Editor),
    ("admin", Role::Admin),
];

/// Letters and digits that cannot be mistaken for one another when read off a terminal.
const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";

fn random_password() -> String {
    let mut rng = rand::rngs::OsRng;
    (0..4)
        .map(|_| {
            (0..5)
                .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Creates the demo accounts, or resets them (new password, enabled, their role, old
/// sessions revoked). Returns (username, role, password) to print.
///
/// Only on a database demo mode provisioned itself: an empty one, which it marks, or one
/// with that mark and no accounts but the demo ones. Anything else is refused before a
/// password changes, so `--demo` pointed at a real `DATABASE_URL` cannot take over its
/// `admin` (the bind-address check alone did not prevent that).
pub async fn provision(
    pool: &PgPool,
    hasher: &PasswordHasher,
) -> anyhow::Result<Vec<(&'static str, Role, String)>> {
    let mut accounts = Vec::new();
    for (name, role) in ACCOUNTS {
        let password = random_password();
        let hash = hasher.hash(password.clone()).await?;
        accounts.push((name, role, password, hash));
    }
    let mut tx = pool.begin().await?;
    // No account may appear between the check and the reset (a `user create` meanwhile,
    // a second demo start).
    sqlx::query!("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    check_is_demo_database(&mut tx).await?;
    for (name, role, _, hash) in &accounts {
        let id = sqlx::query_scalar!(
            r#"
            INSERT INTO users (username, username_key, password_hash, role)
            VALUES ($1, $1, $2, $3)
            ON CONFLICT (username_key) DO UPDATE SET
                password_hash = EXCLUDED.password_hash, role = EXCLUDED.role,
                disabled_at = NULL, password_changed_at = now(), updated_at = now()
            RETURNING id
            "#,
            name,
            hash,
            *role as Role
        )
        .fetch_one(&mut *tx)
        .await?;
        revoke_sessions(&mut *tx, id, None, "demo_reset").await?;
    }
    tx.commit().await?;
    Ok(accounts
        .into_iter()
        .map(|(name, role, password, _)| (name, role, password))
        .collect())
}

/// Refuses (with the reason, on one line) a database demo mode did not provision; marks
/// an empty one as a demo database.
async fn check_is_demo_database(tx: &mut Transaction<'_, Postgres>) -> anyhow::Result<()> {
    let demo_names: Vec<String> = ACCOUNTS
        .iter()
        .map(|(name, _)| (*name).to_owned())
        .collect();
    let others = sqlx::query_scalar!(
        r#"
        SELECT username FROM users WHERE NOT (username_key = ANY($1))
        ORDER BY id LIMIT 4
        "#,
        &demo_names
    )
    .fetch_all(&mut **tx)
    .await?;
    if !others.is_empty() {
        let named = others
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        let more = if others.len() > 3 { ", …" } else { "" };
        anyhow::bail!(
            "--demo refused: this database holds accounts other than the demo accounts \
             ({named}{more}), and demo mode resets the passwords of member, editor and admin. \
             Point --demo at an empty database (another --data-dir, or an empty DATABASE_URL)."
        );
    }
    let marked = sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM demo_mark) AS "marked!""#)
        .fetch_one(&mut **tx)
        .await?;
    if marked {
        return Ok(());
    }
    let users = sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM users"#)
        .fetch_one(&mut **tx)
        .await?;
    if users > 0 {
        anyhow::bail!(
            "--demo refused: this database has accounts named like the demo accounts that were \
             not created by --demo, and demo mode would reset their passwords. Point --demo at \
             an empty database (another --data-dir, or an empty DATABASE_URL)."
        );
    }
    sqlx::query!("INSERT INTO demo_mark DEFAULT VALUES")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn demo_passwords_pass_the_policy() {
        for _ in 0..20 {
            let password = super::random_password();
            assert_eq!(password.len(), 23);
            assert!(
                crate::auth::policy::check(&password, 15, Some("admin")).is_ok(),
                "{password}"
            );
        }
    }
}
