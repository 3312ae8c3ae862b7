//! The account's e-mail address (`/account/email`, only with `--smtp-url`): add or change
//! it (needs a recent sign-in), remove it, and the verification link's page.

use askama::Template;
use axum::{
    extract::State,
    http::{StatusCode, request::Parts},
    response::{IntoResponse, Redirect, Response},
};
use lettre::message::Mailbox;
use serde::Deserialize;

use crate::{
    accounts::email::{self, AddressChange, AddressState, Verified},
    audit::{Actor, AuditEvent},
    display::display_time,
    error::AppError,
    mail::{Mail, Mailer},
    web::{
        AppState,
        http::{
            Chrome, CurrentUser, MaybeUser, TextQuery, errors, fresh::FreshForm, render_status,
            request::audit_meta,
        },
        pages::account::Empty,
    },
};

/// The address line of the account page, and of this page.
pub struct AddressView {
    pub address: String,
    /// When it was verified; `None`: a link is waiting to be opened.
    pub verified: Option<String>,
}

impl AddressView {
    pub fn of(state: AddressState) -> Option<AddressView> {
        Some(AddressView {
            address: state.address?,
            verified: state.verified_at.map(display_time),
        })
    }
}

#[derive(Template)]
#[template(path = "account_email.html")]
struct EmailPage {
    chrome: Chrome,
    csrf: String,
    current: Option<AddressView>,
    done: Option<&'static str>,
    error: Option<String>,
    typed: String,
}

#[derive(Debug, Deserialize)]
pub struct EmailQuery {
    #[serde(default)]
    done: Option<String>,
}

fn done_message(key: &str) -> Option<&'static str> {
    match key {
        "sent" => Some(
            "A link to confirm the address is on its way. Open it within 24 hours; until then \
             the address is unverified.",
        ),
        "removed" => Some("Your e-mail address was removed."),
        "unchanged" => Some("That address is already your verified address: nothing changed."),
        _ => None,
    }
}

/// The account page's e-mail line: `None` without an address, or when mail is off (then
/// the account page shows no e-mail section, and no query is made).
pub async fn account_line(state: &AppState, user_id: i64) -> sqlx::Result<Option<AddressView>> {
    if mailer(state).is_none() {
        return Ok(None);
    }
    Ok(AddressView::of(email::of_user(&state.pool, user_id).await?))
}

/// The mailer, or `None` when mail is off: these pages then do not exist (404), as
/// nothing anywhere mentions e-mail.
fn mailer(state: &AppState) -> Option<&Mailer> {
    state.mailer.as_ref()
}

pub async fn show(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    TextQuery(query): TextQuery<EmailQuery>,
) -> Result<Response, AppError> {
    if mailer(&state).is_none() {
        return Ok(errors::not_found().await.into_response());
    }
    let current = AddressView::of(email::of_user(&state.pool, user.user_id).await?);
    let page = EmailPage {
        chrome: Chrome::new(&state.site, "E-mail address", Some(&user)),
        csrf: user.csrf_token.clone(),
        typed: current
            .as_ref()
            .map(|c| c.address.clone())
            .unwrap_or_default(),
        current,
        done: query.done.as_deref().and_then(done_message),
        error: None,
    };
    Ok(render_status(StatusCode::OK, &page))
}

#[derive(Debug, Deserialize)]
pub struct AddressForm {
    #[serde(default)]
    email: String,
}

/// Sets the address (unverified) and mails its verification link. A recent sign-in is
/// needed: whoever holds a stolen session must not point the account's recovery at
/// their own mailbox.
pub async fn set(
    State(state): State<AppState>,
    FreshForm { user, form, parts }: FreshForm<AddressForm>,
) -> Result<Response, AppError> {
    let Some(mailer) = mailer(&state) else {
        return Ok(errors::not_found().await.into_response());
    };
    let address = match email::parse_address(&form.email) {
        Ok(address) => address,
        Err(problem) => {
            let current = AddressView::of(email::of_user(&state.pool, user.user_id).await?);
            let page = EmailPage {
                chrome: Chrome::new(&state.site, "E-mail address", Some(&user)),
                csrf: user.csrf_token.clone(),
                current,
                done: None,
                error: Some(problem.to_string()),
                typed: form.email.trim().chars().take(254).collect(),
            };
            return Ok(render_status(StatusCode::BAD_REQUEST, &page));
        }
    };
    let meta = audit_meta(&parts);
    let actor = Actor::new(&user.username, meta.clone());
    let verification = match email::set_address(&state.pool, &actor, user.user_id, &address).await?
    {
        AddressChange::Pending(verification) => verification,
        AddressChange::AlreadyVerified => {
            return Ok(Redirect::to("/account/email?done=unchanged").into_response());
        }
        AddressChange::NoUser => return Ok(errors::not_found().await.into_response()),
    };
    // `--public-url` or this server's own address: never the request's Host, which a
    // forger could point at their own server.
    let base = &state.settings.site_url;
    let link = verification.url(base);
    let event = |name| {
        AuditEvent::new(name, meta.clone())
            .username(&user.username)
            .target(&user.username)
            .reason("verification")
    };
    mailer
        .send(Mail {
            to: Mailbox::new(None, address),
            subject: "Confirm your e-mail address".into(),
            text: email::verification_text(&verification, &link, base.as_str()),
            on_sent: Some(event("email_sent")),
            on_failed: Some(event("email_failed")),
        })
        .await;
    Ok(Redirect::to("/account/email?done=sent").into_response())
}

/// Removes the address (a recent sign-in needed, as for changing it).
pub async fn remove(
    State(state): State<AppState>,
    FreshForm { user, parts, .. }: FreshForm<Empty>,
) -> Result<Response, AppError> {
    if mailer(&state).is_none() {
        return Ok(errors::not_found().await.into_response());
    }
    let actor = Actor::new(&user.username, audit_meta(&parts));
    email::remove(&state.pool, &actor, user.user_id).await?;
    Ok(Redirect::to("/account/email?done=removed").into_response())
}

#[derive(Template)]
#[template(path = "email_verified.html")]
struct VerifiedPage {
    chrome: Chrome,
    outcome: Verified,
    signed_in: bool,
}

#[derive(Debug, Deserialize)]
pub struct VerifyQuery {
    #[serde(default)]
    token: String,
}

/// The mailed link: verifies the address, signed in or not (the token says whose). Opening
/// it twice, late, or after the address changed gets one page saying what to do.
pub async fn verify(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    parts: Parts,
    TextQuery(query): TextQuery<VerifyQuery>,
) -> Result<Response, AppError> {
    if mailer(&state).is_none() {
        return Ok(errors::not_found().await.into_response());
    }
    let outcome = email::verify(&state.pool, query.token.trim(), audit_meta(&parts)).await?;
    let status = match outcome {
        Verified::Done { .. } => StatusCode::OK,
        Verified::Taken { .. } => StatusCode::CONFLICT,
        Verified::Stale => StatusCode::GONE,
    };
    let page = VerifiedPage {
        chrome: Chrome::new(&state.site, "E-mail address", user.as_deref()),
        outcome,
        signed_in: user.is_some(),
    };
    Ok(render_status(status, &page))
}
