//! The second step of a destructive action: a page that says what will happen and posts
//! the same form again with `confirm=yes`. No JavaScript involved.

use askama::Template;
use axum::response::Response;
use serde::Deserialize;

use crate::{
    auth::SessionUser,
    web::{
        AppState,
        http::{Chrome, render},
    },
};

#[derive(Template)]
#[template(path = "admin/confirm.html")]
struct ConfirmPage {
    chrome: Chrome,
    csrf: String,
    heading: String,
    consequences: Vec<String>,
    action: String,
    fields: Vec<(String, String)>,
    button: String,
    cancel: String,
}

#[derive(Debug, Deserialize)]
pub struct ConfirmForm {
    #[serde(default)]
    pub confirm: Option<String>,
}

pub fn confirmed(value: &Option<String>) -> bool {
    value.as_deref() == Some("yes")
}

/// What a confirmation page asks about.
pub struct Confirm {
    pub heading: String,
    pub consequences: Vec<String>,
    pub action: String,
    pub fields: Vec<(String, String)>,
    pub button: &'static str,
    pub cancel: String,
}

/// The confirmation page for `confirm`.
pub fn confirm_page(state: &AppState, admin: &SessionUser, confirm: Confirm) -> Response {
    render(&ConfirmPage {
        chrome: Chrome::new(&state.site, "Please confirm", Some(admin)),
        csrf: admin.csrf_token.clone(),
        heading: confirm.heading,
        consequences: confirm.consequences,
        action: confirm.action,
        fields: confirm.fields,
        button: confirm.button.to_owned(),
        cancel: confirm.cancel,
    })
}
