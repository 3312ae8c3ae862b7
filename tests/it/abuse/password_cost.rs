//! zxcvbn's matching grows much faster than the password: crafted inputs of its maximum
//! 100 characters took about a second in a release build (15 s unoptimised, as tests
//! run). The policy judges a bounded prefix, on the hashing workers.

use std::time::Instant;

use portcullis::auth::Role;
use reqwest::{StatusCode, header::ACCEPT};

use crate::support::*;

/// The test runtime has one thread, shared by the app and the client: if the new
/// password were judged on it, every other request would wait for the judgement. While a
/// crafted password of the maximum length is judged, `/healthz` keeps answering. (No
/// timing thresholds: on a busy machine the judgement itself may take seconds; what
/// matters is that nothing else waits for it.)
#[tokio::test]
async fn a_crafted_new_password_is_judged_quickly_and_stalls_nothing() {
    let app = TestApp::spawn().await;
    let member = app.user_client("mara", Role::Member).await;
    // l33t substitutions zxcvbn tries in every combination (zxcvbn-rs issue 69).
    let crafted: String = "4@8({[</369&#!1/|0$5+7%2/"
        .chars()
        .cycle()
        .take(128)
        .collect();
    let csrf = app.session_csrf(&member).await;
    let post = {
        let client: reqwest::Client = (*member).clone();
        let url = app.url("/account/password");
        let form = [
            ("csrf", csrf),
            ("current_password", PASSWORD.to_owned()),
            ("new_password", crafted.clone()),
            ("confirm_password", crafted),
        ];
        tokio::spawn(async move {
            let started = Instant::now();
            let response = client
                .post(url)
                .header(ACCEPT, BROWSER_ACCEPT)
                .form(&form)
                .send()
                .await
                .expect("POST /account/password");
            (response, started.elapsed())
        })
    };
    let health = app.bare_client();
    let mut answered_meanwhile = 0;
    while !post.is_finished() {
        let response = health.get(app.url("/healthz")).send().await.expect("GET");
        assert_eq!(response.status(), StatusCode::OK);
        if !post.is_finished() {
            answered_meanwhile += 1;
        }
        sleep(20).await;
    }
    let (response, took) = post.await.expect("POST task");
    assert_eq!(
        location(&response),
        "/account?done=password_changed",
        "long and random enough: accepted"
    );
    assert!(
        answered_meanwhile >= 3,
        "/healthz answered {answered_meanwhile} times while the password was judged ({took:?})"
    );
}
