//! The time zone a person reads times in: chosen from the IANA list on its own page (the
//! list is 490 names, 30 KB of HTML: the account page, everyone's most visited, only links
//! here and offers the browser's zone through `static/time-zone.js`).

use askama::Template;
use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;

use crate::{
    accounts::own,
    auth::SessionUser,
    display::{Zone, zone_names},
    error::AppError,
    web::{
        AppState,
        http::{Chrome, CurrentUser, form::SignedForm, render_status},
    },
};

#[derive(Template)]
#[template(path = "time_zone.html")]
struct TimeZonePage {
    chrome: Chrome,
    csrf: String,
    zone_name: String,
    zone_chosen: bool,
    zones: &'static [String],
    error: Option<&'static str>,
    time_zone_js: String,
}

fn page(
    state: &AppState,
    user: &SessionUser,
    status: StatusCode,
    error: Option<&'static str>,
) -> Response {
    render_status(
        status,
        &TimeZonePage {
            chrome: Chrome::new(&state.site, "Time zone", Some(user)),
            csrf: user.csrf_token.clone(),
            zone_name: Zone::of(user.time_zone.as_deref()).name().to_owned(),
            zone_chosen: user.time_zone.is_some(),
            zones: zone_names(),
            error,
            time_zone_js: state.site.time_zone_js_href.clone(),
        },
    )
}

pub async fn show(State(state): State<AppState>, CurrentUser(user): CurrentUser) -> Response {
    page(&state, &user, StatusCode::OK, None)
}

#[derive(Debug, Deserialize)]
pub struct TimeZoneForm {
    #[serde(default)]
    time_zone: String,
}

/// Saves the time zone pages show times in; an empty choice goes back to UTC. A name not
/// in the list gets the page again (400) with the field marked.
pub async fn save(
    State(state): State<AppState>,
    SignedForm { user, form, .. }: SignedForm<TimeZoneForm>,
) -> Result<Response, AppError> {
    let saved = own::set_time_zone(&state.pool, user.user_id, form.time_zone.trim()).await?;
    if saved.is_err() {
        return Ok(page(
            &state,
            &user,
            StatusCode::BAD_REQUEST,
            Some("Choose a time zone from the list."),
        ));
    }
    Ok(Redirect::to("/account?done=time_zone_saved").into_response())
}
