//! The public home page: who you are, and which protected pages you may open.

use askama::Template;
use axum::{extract::State, response::Response};

use crate::{
    auth::Role,
    web::{
        AppState, PROTECTED_PAGES,
        http::{Chrome, MaybeUser, render},
    },
};

struct PageRow {
    path: &'static str,
    title: &'static str,
    role: Role,
    allowed: bool,
    why_not: String,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    chrome: Chrome,
    rows: Vec<PageRow>,
}

pub async fn show(State(state): State<AppState>, MaybeUser(user): MaybeUser) -> Response {
    let rows = PROTECTED_PAGES
        .iter()
        .map(|page| {
            let allowed = user.as_ref().is_some_and(|u| u.role.satisfies(page.role));
            let why_not = match &user {
                None => "Sign in first".to_owned(),
                Some(_) if allowed => String::new(),
                Some(_) => format!("No — needs the {} role", page.role),
            };
            PageRow {
                path: page.path,
                title: page.title,
                role: page.role,
                allowed,
                why_not,
            }
        })
        .collect();
    render(&HomePage {
        chrome: Chrome::new(&state.site, "Home", user.as_deref()),
        rows,
    })
}
