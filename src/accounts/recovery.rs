//! "Forgot your password?" (only with `--smtp-url`): a password-reset link mailed to the
//! account's verified address.
//!
//! The answer never says whether an account matched. The request path does the same work
//! for every request, whatever was typed: it reserves the request on the throttles (one
//! statement) and hands the rest to a background task ([`Recovery::start`]): looking the
//! account up, issuing the link (`links::issue_reset`) and queueing the mail. So neither
//! the page nor its timing depends on the account. Over budget, the request gets the same
//! answer and no mail.

use std::sync::Arc;

use lettre::message::Mailbox;
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::Semaphore;

use super::{Username, links::Purpose};
use crate::{
    audit::{Actor, AuditEvent, AuditLog, RequestMeta},
    mail::{Mail, Mailer},
};

/// Requests per typed name or address in [`WINDOW`]: a few tries for a person whose mail
/// is slow, too few to flood anyone's mailbox.
pub const NAME_BUDGET: i32 = 3;
/// Requests per account in [`WINDOW`], however it was named (name or address).
pub const USER_BUDGET: i32 = 3;
/// Requests per client address in [`WINDOW`]: one office behind one address may share it.
pub const IP_BUDGET: i32 = 20;
pub const WINDOW: time::Duration = time::Duration::hours(1);
/// Requests being looked up and issued at once; more are dropped (logged): the answer is
/// the same, and a flood cannot queue unbounded work.
const IN_FLIGHT: usize = 32;

/// Counts a request on every counter in `counters` (scope, key) and says whether all of
/// them are still within their budget. One upsert: `ON CONFLICT DO UPDATE` locks each
/// row, so simultaneous requests queue on it and get exactly the budget. A refused request
/// still counts (it is the flood that keeps the door shut); each window is fixed, so the
/// door opens again [`WINDOW`] after its first request.
async fn reserve(pool: &PgPool, counters: &[(&str, &str)]) -> sqlx::Result<bool> {
    let (scopes, keys): (Vec<&str>, Vec<&str>) = counters.iter().copied().unzip();
    let window = WINDOW.whole_seconds() as f64;
    let within = sqlx::query_scalar!(
        r#"
        INSERT INTO recovery_throttles AS t (scope, key, requests, window_started_at)
        SELECT c.scope, c.key, 1, now() FROM UNNEST($1::text[], $2::text[]) AS c(scope, key)
        ON CONFLICT (scope, key) DO UPDATE SET
            requests = CASE WHEN t.window_started_at <= now() - make_interval(secs => $3)
                            THEN 1 ELSE t.requests + 1 END,
            window_started_at = CASE WHEN t.window_started_at <= now() - make_interval(secs => $3)
                                     THEN now() ELSE t.window_started_at END
        RETURNING requests <= CASE scope WHEN 'ip' THEN $4::int
                                         WHEN 'user' THEN $5::int ELSE $6::int END
                  AS "within!"
        "#,
        &scopes as &[&str],
        &keys as &[&str],
        window,
        IP_BUDGET,
        USER_BUDGET,
        NAME_BUDGET,
    )
    .fetch_all(pool)
    .await?;
    Ok(within.len() == counters.len() && within.into_iter().all(|ok| ok))
}

/// Forgets windows that ended a day ago.
pub async fn sweep(pool: &PgPool) -> sqlx::Result<u64> {
    Ok(sqlx::query!(
        "DELETE FROM recovery_throttles WHERE window_started_at < now() - interval '1 day'"
    )
    .execute(pool)
    .await?
    .rows_affected())
}

/// What was typed into the form: a username or an e-mail address.
#[derive(Debug, Clone)]
pub struct ResetRequest {
    pub typed: String,
    pub ip: String,
    pub meta: RequestMeta,
}

/// The account a reset mail goes to: enabled, with a verified address.
struct Recipient {
    user_id: i64,
    username: String,
    email: String,
}

async fn recipient(pool: &PgPool, typed: &str) -> sqlx::Result<Option<Recipient>> {
    sqlx::query_as!(
        Recipient,
        r#"
        SELECT id AS user_id, username, email AS "email!"
        FROM users
        WHERE disabled_at IS NULL AND email_verified_at IS NOT NULL
          AND (username_key = $1 OR lower(email) = lower($2))
        -- A username that looks like someone else's address names its own account.
        ORDER BY username_key = $1 DESC
        LIMIT 1
        "#,
        Username::key_of(typed),
        typed.trim(),
    )
    .fetch_optional(pool)
    .await
}

/// "Forgot your password?" requests: the throttles on the request path, the rest in
/// background tasks (at most [`IN_FLIGHT`] at once).
#[derive(Clone)]
pub struct Recovery {
    pool: PgPool,
    mailer: Mailer,
    audit: AuditLog,
    link_base: url::Url,
    link_lifetime: time::Duration,
    in_flight: Arc<Semaphore>,
}

impl Recovery {
    pub fn new(
        pool: PgPool,
        mailer: Mailer,
        audit: AuditLog,
        link_base: url::Url,
        link_lifetime: time::Duration,
    ) -> Recovery {
        Recovery {
            pool,
            mailer,
            audit,
            link_base,
            link_lifetime,
            in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
        }
    }

    /// Takes a request: counts it (per typed name or address, per client address) and,
    /// within budget, starts the lookup and the mail in the background. Returns at once,
    /// having done the same work whether or not an account matches.
    pub async fn start(&self, request: ResetRequest) -> sqlx::Result<()> {
        let name = Username::key_of(&request.typed);
        if !reserve(&self.pool, &[("name", &name), ("ip", &request.ip)]).await? {
            tracing::info!(ip = %request.ip, "password reset request over budget: no mail");
            return Ok(());
        }
        let Ok(permit) = Arc::clone(&self.in_flight).try_acquire_owned() else {
            tracing::warn!("{IN_FLIGHT} password reset requests in progress: request dropped");
            return Ok(());
        };
        let recovery = self.clone();
        tokio::spawn(async move {
            if let Err(err) = recovery.handle(request).await {
                tracing::error!(error = %err, "password reset request failed");
            }
            drop(permit);
        });
        Ok(())
    }

    async fn handle(&self, request: ResetRequest) -> anyhow::Result<()> {
        let Some(to) = recipient(&self.pool, &request.typed).await? else {
            // No account, a disabled one, or no verified address: nothing to send, and
            // nothing about a known person to record.
            tracing::info!("password reset requested: no account with a verified address matches");
            return Ok(());
        };
        let event = |name| {
            AuditEvent::new(name, request.meta.clone())
                .username(&to.username)
                .target(&to.username)
        };
        if !reserve(&self.pool, &[("user", &to.user_id.to_string())]).await? {
            self.audit
                .record(event("password_reset_mail_requested").reason("throttled"))
                .await;
            return Ok(());
        }
        self.audit
            .record(event("password_reset_mail_requested"))
            .await;
        let mailbox: Mailbox = match to.email.parse() {
            Ok(address) => Mailbox::new(None, address),
            Err(err) => {
                tracing::error!(error = %err, user = %to.username, "stored address unusable");
                self.audit
                    .record(event("password_reset_mail_failed").reason("bad_address"))
                    .await;
                return Ok(());
            }
        };
        let actor = Actor::new("system", request.meta.clone());
        let issued =
            super::links::issue_reset(&self.pool, &actor, to.user_id, self.link_lifetime).await?;
        let link = issued.url(&self.link_base);
        let (subject, text) = link_mail(&LinkMail {
            username: &issued.username,
            purpose: issued.purpose,
            link: &link,
            expires_at: issued.expires_at,
            site: &self.link_base,
            asked: true,
        });
        let detail = json!({ "address": to.email });
        self.mailer
            .send(Mail {
                to: mailbox,
                subject,
                text,
                on_sent: Some(event("password_reset_mail_sent").detail(detail.clone())),
                on_failed: Some(event("password_reset_mail_failed").detail(detail)),
            })
            .await;
        Ok(())
    }
}

/// What a mail carrying a one-time password link says.
pub struct LinkMail<'a> {
    pub username: &'a str,
    pub purpose: Purpose,
    pub link: &'a url::Url,
    pub expires_at: time::OffsetDateTime,
    pub site: &'a url::Url,
    /// The person asked for it ("Forgot your password?"); else an administrator sent it.
    pub asked: bool,
}

/// The subject and text of a mail carrying a one-time password link: an invitation or a
/// reset.
pub fn link_mail(mail: &LinkMail<'_>) -> (String, String) {
    let LinkMail {
        username: name,
        link,
        site,
        ..
    } = mail;
    let expires = crate::display::display_time(mail.expires_at);
    if mail.purpose == Purpose::Invite {
        let text = format!(
            "Hello {name},\n\n\
             an account named {name} was made for you at {site}. Open this link to choose \
             your password:\n\n{link}\n\n\
             The link works once, until {expires}. Then sign in with your name and the \
             password you chose.\n"
        );
        return ("Your new account: choose your password".into(), text);
    }
    let why = if mail.asked {
        "someone (we hope you) asked for a link to choose a new password for your account"
    } else {
        "an administrator sent you a link to choose a new password for your account"
    };
    let text = format!(
        "Hello {name},\n\n\
         {why} at {site}. Open it to choose one:\n\n{link}\n\n\
         The link works once, until {expires}. Choosing a password signs you out everywhere \
         else.\n\n\
         If you did not expect this, ignore this mail: your password stays as it is.\n"
    );
    ("Choose a new password".into(), text)
}
