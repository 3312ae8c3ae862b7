//! `serve --demo`: three accounts with fresh random passwords, printed once, so a newcomer
//! can try every 401/403 case within a minute. Local only (see `Settings::from_args`).

use rand::Rng;
use sqlx::PgPool;

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
pub async fn provision(
    pool: &PgPool,
    hasher: &PasswordHasher,
) -> anyhow::Result<Vec<(&'static str, Role, String)>> {
    let mut accounts = Vec::new();
    for (name, role) in ACCOUNTS {
        let password = random_password();
        let hash = hasher.hash(password.clone()).await?;
        let mut tx = pool.begin().await?;
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
            role as Role
        )
        .fetch_one(&mut *tx)
        .await?;
        revoke_sessions(&mut *tx, id, None, "demo_reset").await?;
        tx.commit().await?;
        accounts.push((name, role, password));
    }
    Ok(accounts)
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
