//! "Send the link by e-mail" on the one-time link page (with `--smtp-url`): besides being
//! shown for copying, an invitation or reset link can go to the person's address — a
//! verified one, or for an invitation the address typed when inviting.
//!
//! The page posts the token back (it is already on the page, and the form is CSRF-checked
//! and sent from a no-referrer page): only its SHA-256 is stored, so the server cannot
//! mail a link it no longer has. The token must be live and belong to the user in the
//! path; nothing else is accepted.

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use lettre::message::Mailbox;
use serde::Deserialize;
use serde_json::json;

use crate::{
    accounts::{
        self, email,
        links::{self, Issued, LinkState},
        recovery::{LinkMail, link_mail},
    },
    audit::AuditEvent,
    error::AppError,
    mail::Mail,
    web::{
        AppState,
        http::{form::SignedForm, request::audit_meta},
    },
};

/// What the link page offers: the address the link may be mailed to, and the token to
/// post back. `None` without mail or without a usable address.
pub struct MailOffer {
    pub to: String,
    pub token: String,
}

impl MailOffer {
    pub async fn of(state: &AppState, issued: &Issued) -> Result<Option<MailOffer>, AppError> {
        if state.mailer.is_none() {
            return Ok(None);
        }
        let Some(to) = email::link_address(&state.pool, issued.user_id, issued.purpose).await?
        else {
            return Ok(None);
        };
        let url = issued.url(&state.settings.site_url);
        let token = url
            .query_pairs()
            .find(|(name, _)| name == "token")
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default();
        Ok(Some(MailOffer { to, token }))
    }
}

#[derive(Debug, Deserialize)]
pub struct MailLinkForm {
    #[serde(default)]
    token: String,
}

/// Mails the link (queued: the SMTP server's answer comes later, in the audit trail as
/// `password_link_mail_sent` or `…_failed`), then back to the user's page.
pub async fn send(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    SignedForm { user, form, parts }: SignedForm<MailLinkForm>,
) -> Result<Response, AppError> {
    let Some(mailer) = state.mailer.as_ref() else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    let Some(target) = accounts::by_id(&state.pool, id).await? else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    let LinkState::Live {
        username,
        purpose,
        expires_at,
    } = links::check(&state.pool, form.token.trim()).await?
    else {
        return Ok(gone(id));
    };
    if username != target.username {
        return Ok(gone(id));
    }
    let Some(to) = email::link_address(&state.pool, id, purpose).await? else {
        return Ok(gone(id));
    };
    let Ok(address) = to.parse() else {
        return Ok(gone(id));
    };
    let site = &state.settings.site_url;
    let mut link = site.join(links::PATH).unwrap_or_else(|_| site.clone());
    link.query_pairs_mut()
        .append_pair("token", form.token.trim());
    let (subject, text) = link_mail(&LinkMail {
        username: &username,
        purpose,
        link: &link,
        expires_at,
        site,
        asked: false,
    });
    let meta = audit_meta(&parts);
    let event = |name| {
        AuditEvent::new(name, meta.clone())
            .username(&user.username)
            .target(&username)
            .reason(purpose.as_str())
            .detail(json!({ "address": to }))
    };
    mailer
        .send(Mail {
            to: Mailbox::new(None, address),
            subject,
            text,
            on_sent: Some(event("password_link_mail_sent")),
            on_failed: Some(event("password_link_mail_failed")),
        })
        .await;
    Ok(Redirect::to(&format!("/admin/users/{id}?done=link_mailed")).into_response())
}

/// The link stopped working (used, replaced, expired) or has nowhere to go: the user's
/// page says so.
fn gone(id: i64) -> Response {
    Redirect::to(&format!("/admin/users/{id}?done=link_not_mailed")).into_response()
}
