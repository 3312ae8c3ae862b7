//! The journeys people take, asserted on what they see: page text, the address bar and
//! keyboard focus. Each journey is its own test with JavaScript on, and all of them run
//! again with JavaScript off (`every_journey_works_without_javascript`): the app's scripts
//! (`static/passkeys.js`, `static/copy.js`, `static/time-zone.js`) only add passkey
//! buttons, a copy button and offer the browser's time zone, so nothing else may depend
//! on them.
//!
//! - `signing_in`: one person signing in, out, expiring and being refused (1–6, 11–13).
//! - `administration`: the administration, the first run and access requests (7–10).
//! - `strong`: two-step verification, re-authentication and passkeys (15–17).
//! - `devices`: sessions as cards on a phone, the time zone from the browser (18–19).
//! - `recovery`: "Forgot your password?" with mail on (21).
//! - `remembered`: "keep me signed in" across the browser closing (20).

mod administration;
mod devices;
mod recovery;
mod remembered;
mod signing_in;
mod strong;

use administration::{
    admin_pages, first_run_creates_the_admin, request_access_declined, request_access_granted,
};
use signing_in::{
    back_after_sign_out_shows_nothing_private, deep_link_then_sign_in, demo_banner_on_every_page,
    help_from_401_and_403, idle_expiry_then_back_where_you_were, member_sees_the_403_page,
    signing_out_other_sessions_reaches_the_other_browser, stale_form_returns_to_its_page,
    wrong_password_keeps_username_and_focuses_password,
};

use devices::{sessions_as_cards_on_a_phone, time_zone_from_the_browser, time_zone_from_the_list};
use recovery::forgot_password_then_sign_in;
use remembered::kept_signed_in;
use strong::{passkeys, reauthenticate_mid_change, two_step_verification};

use super::{
    harness::{Js, turn},
    pages::{self, PAGES, SUPPORT_CONTACT},
};
use crate::support::TestApp;

const FORBIDDEN: &str = "You do not have access to this page";
const HELP: &str = "Signing in and access: what happened and what to do";

async fn app() -> TestApp {
    TestApp::spawn_with(|settings| {
        settings.support_contact = Some(SUPPORT_CONTACT.to_owned());
    })
    .await
}

#[tokio::test]
async fn deep_link_while_signed_out_returns_there_after_sign_in() {
    let Some(turn) = turn().await else { return };
    deep_link_then_sign_in(&turn, Js::On).await;
}

#[tokio::test]
async fn member_opening_reports_sees_the_403_page_and_its_links_work() {
    let Some(turn) = turn().await else { return };
    member_sees_the_403_page(&turn, Js::On).await;
}

#[tokio::test]
async fn back_button_after_sign_out_shows_no_private_content() {
    let Some(turn) = turn().await else { return };
    back_after_sign_out_shows_nothing_private(&turn, Js::On).await;
}

#[tokio::test]
async fn idle_expiry_sends_the_next_click_to_sign_in_and_back() {
    let Some(turn) = turn().await else { return };
    idle_expiry_then_back_where_you_were(&turn, Js::On).await;
}

#[tokio::test]
async fn signing_out_other_sessions_signs_out_the_other_browser() {
    let Some(turn) = turn().await else { return };
    signing_out_other_sessions_reaches_the_other_browser(&turn, Js::On).await;
}

#[tokio::test]
async fn wrong_password_keeps_username_clears_password_and_focuses_it() {
    let Some(turn) = turn().await else { return };
    wrong_password_keeps_username_and_focuses_password(&turn, Js::On).await;
}

#[tokio::test]
async fn admin_creates_a_user_changes_a_role_signs_someone_out_and_sees_the_dashboard() {
    let Some(turn) = turn().await else { return };
    admin_pages(&turn, Js::On).await;
}

#[tokio::test]
async fn first_run_setup_link_creates_the_admin_then_sign_in_leads_to_admin() {
    let Some(turn) = turn().await else { return };
    first_run_creates_the_admin(&turn, Js::On).await;
}

#[tokio::test]
async fn member_requests_access_from_the_403_page_and_the_admin_grants_it() {
    let Some(turn) = turn().await else { return };
    request_access_granted(&turn, Js::On).await;
}

#[tokio::test]
async fn a_declined_request_shows_its_reason_on_the_403_and_account_pages() {
    let Some(turn) = turn().await else { return };
    request_access_declined(&turn, Js::On).await;
}

#[tokio::test]
async fn a_form_sent_after_idle_expiry_returns_to_its_page_after_sign_in() {
    let Some(turn) = turn().await else { return };
    stale_form_returns_to_its_page(&turn, Js::On).await;
}

#[tokio::test]
async fn demo_mode_shows_its_banner_on_every_page() {
    let Some(turn) = turn().await else { return };
    demo_banner_on_every_page(&turn, Js::On).await;
}

#[tokio::test]
async fn help_is_reachable_from_the_401_notice_and_the_403_page() {
    let Some(turn) = turn().await else { return };
    help_from_401_and_403(&turn, Js::On).await;
}

#[tokio::test]
async fn two_step_verification_is_turned_on_and_used_to_sign_in() {
    let Some(turn) = turn().await else { return };
    two_step_verification(&turn, Js::On).await;
}

#[tokio::test]
async fn an_admin_reauthenticates_mid_change_and_lands_where_they_were() {
    let Some(turn) = turn().await else { return };
    reauthenticate_mid_change(&turn, Js::On).await;
}

#[tokio::test]
async fn a_passkey_is_added_used_to_sign_in_alone_and_to_confirm_its_removal() {
    let Some(turn) = turn().await else { return };
    passkeys(&turn, Js::On).await;
}

#[tokio::test]
async fn keep_me_signed_in_outlives_the_browser_closing_and_sign_out_ends_it() {
    let Some(turn) = turn().await else { return };
    kept_signed_in(&turn, Js::On).await;
}

#[tokio::test]
async fn on_a_phone_each_session_is_a_card_with_a_working_sign_out() {
    let Some(turn) = turn().await else { return };
    sessions_as_cards_on_a_phone(&turn, Js::On).await;
}

#[tokio::test]
async fn the_account_page_offers_the_browsers_time_zone_and_saves_it() {
    let Some(turn) = turn().await else { return };
    time_zone_from_the_browser(&turn).await;
}

#[tokio::test]
async fn a_forgotten_password_is_replaced_through_the_mailed_link() {
    let Some(turn) = turn().await else { return };
    forgot_password_then_sign_in(&turn, Js::On).await;
}

/// 14. Every journey, and every page, with JavaScript off.
#[tokio::test]
async fn every_journey_works_without_javascript() {
    let Some(turn) = turn().await else { return };
    deep_link_then_sign_in(&turn, Js::Off).await;
    member_sees_the_403_page(&turn, Js::Off).await;
    back_after_sign_out_shows_nothing_private(&turn, Js::Off).await;
    idle_expiry_then_back_where_you_were(&turn, Js::Off).await;
    signing_out_other_sessions_reaches_the_other_browser(&turn, Js::Off).await;
    wrong_password_keeps_username_and_focuses_password(&turn, Js::Off).await;
    admin_pages(&turn, Js::Off).await;
    first_run_creates_the_admin(&turn, Js::Off).await;
    request_access_granted(&turn, Js::Off).await;
    request_access_declined(&turn, Js::Off).await;
    stale_form_returns_to_its_page(&turn, Js::Off).await;
    demo_banner_on_every_page(&turn, Js::Off).await;
    help_from_401_and_403(&turn, Js::Off).await;
    two_step_verification(&turn, Js::Off).await;
    reauthenticate_mid_change(&turn, Js::Off).await;
    passkeys(&turn, Js::Off).await;
    kept_signed_in(&turn, Js::Off).await;
    sessions_as_cards_on_a_phone(&turn, Js::Off).await;
    time_zone_from_the_list(&turn, Js::Off).await;
    forgot_password_then_sign_in(&turn, Js::Off).await;
}

#[tokio::test]
async fn every_page_shows_without_javascript() {
    let Some(turn) = turn().await else { return };
    let site = pages::Site::new().await;
    let browser = turn.browser(&site.app, Js::Off).await;
    let mut signed_in = None;
    for case in PAGES {
        pages::show(&browser, &site, &mut signed_in, case).await;
    }
    browser.close().await;
}
