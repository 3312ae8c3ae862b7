//! User administration: the one implementation of every change an administrator makes to
//! an account, shared by the admin pages, the access-request grant and the command line.
//!
//! Each change is one transaction that first locks the set of enabled administrators
//! (`SELECT … FOR UPDATE`, in id order so two changes never deadlock), then checks "at least
//! one enabled administrator remains", then changes, then writes its audit event. Two
//! administrators demoting each other at the same moment are therefore serialized: the
//! second sees the first's change and is refused. The audit event commits with the change,
//! so a change is never made without its record (nor recorded without being made).

use serde_json::json;
use sqlx::{PgConnection, PgPool};

use super::{
    UserError, UserRow,
    links::{self, Issued, LinkError},
    revoke_sessions,
};
use crate::{
    audit::{self, Actor, AuditEvent},
    auth::{
        Role,
        password::{HashError, PasswordHasher},
        second_factor,
    },
};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no such user")]
    NotFound,
    /// The change would leave no enabled administrator.
    #[error("{0} is the last enabled administrator; make another user an administrator first")]
    LastAdmin(String),
    /// The name or password of a new user (see `UserError`).
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Locks the enabled administrators' rows for the rest of the transaction and returns
/// their ids. Every change that could remove an administrator takes this lock first.
async fn lock_admins(conn: &mut PgConnection) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar!(
        r#"
        SELECT id FROM users WHERE role = 'admin' AND disabled_at IS NULL
        ORDER BY id FOR UPDATE
        "#
    )
    .fetch_all(conn)
    .await
}

/// Locks the admin set, then loads the target (after the lock, so it is current).
async fn begin(
    pool: &PgPool,
    target_id: i64,
) -> Result<
    (
        sqlx::Transaction<'static, sqlx::Postgres>,
        Vec<i64>,
        UserRow,
    ),
    AdminError,
> {
    let mut tx = pool.begin().await?;
    let admins = lock_admins(&mut tx).await?;
    let target = super::by_id(&mut *tx, target_id)
        .await?
        .ok_or(AdminError::NotFound)?;
    Ok((tx, admins, target))
}

/// Begins a change that cannot remove an administrator (no admin-set lock) and loads its
/// target.
async fn begin_unlocked(
    pool: &PgPool,
    target_id: i64,
) -> Result<(sqlx::Transaction<'static, sqlx::Postgres>, UserRow), AdminError> {
    let mut tx = pool.begin().await?;
    let target = super::by_id(&mut *tx, target_id)
        .await?
        .ok_or(AdminError::NotFound)?;
    Ok((tx, target))
}

/// Ends a change: its audit event (if the change did not write its own) in the same
/// transaction, the commit, and what it did.
async fn finish(
    mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
    event: Option<AuditEvent>,
    user: UserRow,
    sessions_revoked: u64,
) -> Result<Changed, AdminError> {
    if let Some(event) = event {
        audit::write_in(&mut *tx, &event).await?;
    }
    tx.commit().await?;
    Ok(Changed {
        user,
        sessions_revoked,
    })
}

/// Refuses when `target` is the only enabled administrator in `admins`.
fn keep_one_admin(admins: &[i64], target: &UserRow) -> Result<(), AdminError> {
    if admins.len() == 1 && admins[0] == target.id {
        return Err(AdminError::LastAdmin(target.username.clone()));
    }
    Ok(())
}

/// Creates a user with a password chosen now. Administrators never choose passwords for
/// others (they [`invite`]); this serves the operator creating the first administrator
/// with their own password ([`create_first`]), demo mode and tests.
pub async fn create(
    pool: &PgPool,
    hasher: &PasswordHasher,
    actor: &Actor,
    username: &str,
    password: &str,
    role: Role,
    min_password_chars: usize,
) -> Result<UserRow, AdminError> {
    let mut tx = pool.begin().await?;
    let user = super::insert(
        &mut *tx,
        hasher,
        username,
        password,
        role,
        min_password_chars,
    )
    .await?;
    let event = actor
        .event("user_created", &user.username)
        .detail(json!({ "role": role }));
    audit::write_in(&mut *tx, &event).await?;
    tx.commit().await?;
    Ok(user)
}

/// Creates the first administrator with the password the operator typed for themselves
/// (`portcullis user create`); `Ok(None)` once any user exists (then others are invited).
/// Serialized with the first-run setup page: two at once create one.
pub async fn create_first(
    pool: &PgPool,
    hasher: &PasswordHasher,
    actor: &Actor,
    username: &str,
    password: &str,
    min_password_chars: usize,
) -> Result<Option<UserRow>, AdminError> {
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "SELECT pg_advisory_xact_lock($1)",
        super::setup::FIRST_USER_LOCK
    )
    .execute(&mut *tx)
    .await?;
    let existing = sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM users"#)
        .fetch_one(&mut *tx)
        .await?;
    if existing > 0 {
        return Ok(None);
    }
    let user = super::insert(
        &mut *tx,
        hasher,
        username,
        password,
        Role::Admin,
        min_password_chars,
    )
    .await?;
    let event = actor
        .event("user_created", &user.username)
        .detail(json!({ "role": Role::Admin }));
    audit::write_in(&mut *tx, &event).await?;
    tx.commit().await?;
    Ok(Some(user))
}

/// Creates a user without a password and issues their invitation link (`accounts::links`):
/// they choose their password themselves. Nothing else changes, so no admin-set lock.
pub async fn invite(
    pool: &PgPool,
    actor: &Actor,
    username: &str,
    role: Role,
    link_lifetime: time::Duration,
) -> Result<Issued, AdminError> {
    let mut tx = pool.begin().await?;
    let issued = links::issue_invite(&mut tx, actor, username, role, link_lifetime).await?;
    tx.commit().await?;
    Ok(issued)
}

/// Issues a password-reset link for `target_id` (a new invitation if they never chose a
/// password), voiding their older links. The password and sessions stay as they are until
/// the link is used: the reset happens when its person chooses a new password.
pub async fn reset_link(
    pool: &PgPool,
    actor: &Actor,
    target_id: i64,
    link_lifetime: time::Duration,
) -> Result<Issued, AdminError> {
    links::issue_reset(pool, actor, target_id, link_lifetime)
        .await
        .map_err(|err| match err {
            LinkError::NotFound => AdminError::NotFound,
            LinkError::User(err) => AdminError::User(err),
            LinkError::Database(err) => AdminError::Database(err),
        })
}

/// What a change did, for the page or the command line to report.
#[derive(Debug, Clone)]
pub struct Changed {
    pub user: UserRow,
    /// Sessions it signed out.
    pub sessions_revoked: u64,
}

/// Gives `target_id` the role `role`; refuses to demote the last enabled administrator.
/// Setting the role a user already has changes (and records) nothing.
pub async fn set_role(
    pool: &PgPool,
    actor: &Actor,
    target_id: i64,
    role: Role,
) -> Result<Changed, AdminError> {
    let (mut tx, admins, user) = begin(pool, target_id).await?;
    if user.role != role {
        if role != Role::Admin {
            keep_one_admin(&admins, &user)?;
        }
        sqlx::query!(
            "UPDATE users SET role = $2, updated_at = now() WHERE id = $1",
            target_id,
            role as Role
        )
        .execute(&mut *tx)
        .await?;
        let event = actor
            .event("role_changed", &user.username)
            .detail(json!({ "from": user.role, "to": role }));
        audit::write_in(&mut *tx, &event).await?;
    }
    finish(tx, None, user, 0).await
}

/// Disables an account and signs it out everywhere (re-enabling later does not bring old
/// sessions back); refuses for the last enabled administrator.
pub async fn disable(pool: &PgPool, actor: &Actor, target_id: i64) -> Result<Changed, AdminError> {
    let (mut tx, admins, user) = begin(pool, target_id).await?;
    keep_one_admin(&admins, &user)?;
    sqlx::query!(
        r#"
        UPDATE users SET disabled_at = coalesce(disabled_at, now()), updated_at = now()
        WHERE id = $1
        "#,
        target_id
    )
    .execute(&mut *tx)
    .await?;
    let ended = revoke_sessions(&mut *tx, target_id, None, "user_disabled").await?;
    let event = actor
        .event("user_disabled", &user.username)
        .detail(json!({ "sessions_revoked": ended }));
    finish(tx, Some(event), user, ended).await
}

/// Enables a disabled account (under the same lock: it changes the admin set too).
pub async fn enable(pool: &PgPool, actor: &Actor, target_id: i64) -> Result<Changed, AdminError> {
    let (mut tx, _, user) = begin(pool, target_id).await?;
    sqlx::query!(
        "UPDATE users SET disabled_at = NULL, updated_at = now() WHERE id = $1",
        target_id
    )
    .execute(&mut *tx)
    .await?;
    finish(
        tx,
        Some(actor.event("user_enabled", &user.username)),
        user,
        0,
    )
    .await
}

/// Deletes an account for good (its audit events stay); refuses for the last enabled
/// administrator.
pub async fn delete(pool: &PgPool, actor: &Actor, target_id: i64) -> Result<Changed, AdminError> {
    let (mut tx, admins, user) = begin(pool, target_id).await?;
    keep_one_admin(&admins, &user)?;
    sqlx::query!("DELETE FROM users WHERE id = $1", target_id)
        .execute(&mut *tx)
        .await?;
    finish(
        tx,
        Some(actor.event("user_deleted", &user.username)),
        user,
        0,
    )
    .await
}

/// Removes a user's second factors (authenticator app, recovery codes, passkeys: lost
/// phone, lost codes, lost device) and signs them out everywhere; they sign in with their
/// password and enrol again.
pub async fn reset_second_factor(
    pool: &PgPool,
    actor: &Actor,
    target_id: i64,
) -> Result<Changed, AdminError> {
    let (mut tx, user) = begin_unlocked(pool, target_id).await?;
    let removed = second_factor::remove(
        &mut tx,
        actor,
        "second_factor_reset",
        target_id,
        &user.username,
    )
    .await?;
    let passkeys =
        crate::auth::passkey::remove_all(&mut tx, actor, target_id, &user.username).await?;
    if !removed && passkeys == 0 {
        return Err(AdminError::NotFound);
    }
    let ended = revoke_sessions(&mut *tx, target_id, None, "second_factor_reset").await?;
    finish(tx, None, user, ended).await
}

/// Signs a user out everywhere.
pub async fn revoke_all_sessions(
    pool: &PgPool,
    actor: &Actor,
    target_id: i64,
) -> Result<Changed, AdminError> {
    let (mut tx, user) = begin_unlocked(pool, target_id).await?;
    let ended = revoke_sessions(&mut *tx, target_id, None, "admin").await?;
    let event = actor
        .event("sessions_revoked", &user.username)
        .detail(json!({ "count": ended }));
    finish(tx, Some(event), user, ended).await
}

/// Signs out one live session of a user. `NotFound` if it is not theirs or already ended.
pub async fn revoke_one_session(
    pool: &PgPool,
    actor: &Actor,
    target_id: i64,
    session_id: i64,
) -> Result<Changed, AdminError> {
    let (mut tx, user) = begin_unlocked(pool, target_id).await?;
    if !super::revoke_session(&mut *tx, target_id, session_id, "admin").await? {
        return Err(AdminError::NotFound);
    }
    let event = actor
        .event("session_revoked", &user.username)
        .reason("admin")
        .detail(json!({ "session": session_id }));
    finish(tx, Some(event), user, 1).await
}

/// A granted access request.
#[derive(Debug, Clone)]
pub struct Granted {
    pub username: String,
    pub role: Role,
}

/// Grants a pending access request: the person's role becomes the requested one (never
/// lowered), effective on their next request. `NotFound` if no such pending request.
pub async fn grant(pool: &PgPool, actor: &Actor, request_id: i64) -> Result<Granted, AdminError> {
    let mut tx = pool.begin().await?;
    lock_admins(&mut tx).await?;
    let request = sqlx::query!(
        r#"
        SELECT r.user_id, r.role, r.path, u.username, u.role AS "current_role: Role"
        FROM access_requests r JOIN users u ON u.id = r.user_id
        WHERE r.id = $1 AND r.status = 'pending'
        FOR UPDATE OF r
        "#,
        request_id
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(AdminError::NotFound)?;
    let role = Role::parse(&request.role).ok_or(AdminError::NotFound)?;
    if !request.current_role.satisfies(role) {
        sqlx::query!(
            "UPDATE users SET role = $2, updated_at = now() WHERE id = $1",
            request.user_id,
            role as Role
        )
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query!(
        r#"
        UPDATE access_requests SET status = 'granted', decided_at = now(), decided_by = $2
        WHERE id = $1
        "#,
        request_id,
        actor.username
    )
    .execute(&mut *tx)
    .await?;
    let event = actor
        .event("access_granted", &request.username)
        .reason(role.as_str())
        .detail(json!({ "page": request.path, "from": request.current_role, "to": role }));
    audit::write_in(&mut *tx, &event).await?;
    tx.commit().await?;
    Ok(Granted {
        username: request.username,
        role,
    })
}
