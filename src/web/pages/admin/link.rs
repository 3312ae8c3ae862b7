//! The page after "Create user" or "Reset password": the one-time link, shown this once
//! (only its hash is stored), with a copy button.

use askama::Template;
use axum::{
    http::{HeaderValue, StatusCode, header},
    response::Response,
};

use super::{admin_chrome, mail_link::MailOffer};
use crate::{
    accounts::links::{Issued, Purpose},
    auth::{Role, SessionUser},
    display::display_time,
    error::AppError,
    web::{AppState, http::render_status},
};

#[derive(Template)]
#[template(path = "admin/link.html")]
struct LinkPage {
    chrome: crate::web::http::Chrome,
    script: String,
    id: i64,
    username: String,
    role: Role,
    invited: bool,
    /// The account was created just now (not a new link for an existing one).
    created: bool,
    voided: u64,
    link: String,
    expires: String,
    /// "Send the link by e-mail" (`mail_link`), with mail on and an address to send to.
    mail_offer: Option<MailOffer>,
    csrf: String,
}

/// The link page for `issued` (answered directly to the POST: the link must not travel in
/// a redirect's URL, and is not kept anywhere to show again); `created`: the account was
/// created with it.
pub async fn link_page(
    state: &AppState,
    admin: &SessionUser,
    issued: &Issued,
    role: Role,
    created: bool,
) -> Result<Response, AppError> {
    let invited = issued.purpose == Purpose::Invite;
    let title = if invited {
        format!("Invitation link for {}", issued.username)
    } else {
        format!("Password link for {}", issued.username)
    };
    let mut response = render_status(
        StatusCode::OK,
        &LinkPage {
            chrome: admin_chrome(state, title, admin).await?,
            script: state.site.copy_js_href.clone(),
            id: issued.user_id,
            username: issued.username.clone(),
            role,
            invited,
            created,
            voided: issued.voided,
            link: issued.url(&state.settings.site_url).to_string(),
            expires: display_time(issued.expires_at),
            mail_offer: MailOffer::of(state, issued).await?,
            csrf: admin.csrf_token.clone(),
        },
    );
    // The page holds a live credential: keep it out of caches and other sites' logs.
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Ok(response)
}
