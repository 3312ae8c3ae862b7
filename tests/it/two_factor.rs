//! Two-step verification: enrolment, the second step of signing in, recovery codes, the
//! policy, and an administrator's reset.

use portcullis::{auth::Role, config::RequireMfa};
use reqwest::StatusCode;
use totp_rs::{Builder, Secret};

use crate::support::*;

/// The code an authenticator app would show `offset` steps from now.
pub(crate) fn code(key: &str, offset: i64) -> String {
    let secret = Secret::try_from_base32(key).expect("base32 key");
    let totp = Builder::new().with_secret(secret).build().expect("totp");
    let now = time::OffsetDateTime::now_utc().unix_timestamp() + offset * 30;
    totp.generate(u64::try_from(now).expect("time")).to_string()
}

fn between<'a>(page: &'a str, start: &str, end: &str) -> &'a str {
    let from = page
        .find(start)
        .map(|i| i + start.len())
        .expect("start marker");
    let to = page[from..]
        .find(end)
        .map(|i| from + i)
        .expect("end marker");
    &page[from..to]
}

/// Enrols `client` (signed in as `name`); returns the key and the recovery codes.
pub(crate) async fn enrol(app: &TestApp, client: &Browser) -> (String, Vec<String>) {
    let page = app
        .get(client, "/account/two-factor")
        .await
        .text()
        .await
        .expect("body");
    assert!(
        page.contains("data:image/svg+xml;base64,"),
        "a QR code: {page}"
    );
    let key = between(&page, r#"id="totp-key">"#, "</code>").to_owned();
    let csrf = hidden_field(&page, "csrf").expect("csrf");
    let wrong = app
        .post_form_with_csrf(
            client,
            "/account/two-factor/enable",
            &[("code", "000000")],
            &csrf,
        )
        .await;
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    let done = app
        .post_form_with_csrf(
            client,
            "/account/two-factor/enable",
            &[("code", &code(&key, 0))],
            &csrf,
        )
        .await;
    assert_eq!(done.status(), StatusCode::OK);
    let page = done.text().await.expect("body");
    let codes: Vec<String> = page
        .split("<li><code>")
        .skip(1)
        .map(|rest| rest.split("</code>").next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(codes.len(), 10, "{page}");
    (key, codes)
}

#[tokio::test]
async fn enrolled_users_sign_in_with_a_code_that_works_once() {
    let app = TestApp::spawn().await;
    let first = app.user_client("tia", Role::Member).await;
    let (key, _) = enrol(&app, &first).await;
    app.audit("event = 'second_factor_enabled' AND username = 'tia'", 1)
        .await;

    // The password alone leads to the second step, which grants nothing yet.
    let browser = app.client();
    let response = app.post_login(&browser, "tia", PASSWORD, "/reports").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/login/second-factor?next=%2Freports");
    let response = app.get(&browser, "/account").await;
    assert_login_redirect(response, "required", Some("/account")).await;

    let page = app
        .get(&browser, "/login/second-factor?next=%2Freports")
        .await
        .text()
        .await
        .expect("body");
    let csrf = hidden_field(&page, "csrf").expect("csrf");
    let post = |code: String| {
        let csrf = csrf.clone();
        let browser = &browser;
        let app = &app;
        async move {
            browser
                .post(app.url("/login/second-factor"))
                .header(reqwest::header::ACCEPT, BROWSER_ACCEPT)
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("code", code.as_str()),
                    ("next", "/reports"),
                ])
                .send()
                .await
                .expect("POST")
        }
    };
    let wrong = post("123456".into()).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let right = post(code(&key, 1)).await;
    assert_eq!(app.landing(&browser, right).await, "/reports");
    let method: String = sqlx::query_scalar(
        "SELECT auth_method FROM sessions WHERE user_id = (SELECT id FROM users WHERE username = 'tia') \
         ORDER BY created_at DESC LIMIT 1",
    )
    .fetch_one(&app.pool)
    .await
    .expect("session");
    assert_eq!(method, "password+totp");

    // The same code again, in another sign-in: refused (no replay within its window).
    let again = app.client();
    app.post_login(&again, "tia", PASSWORD, "").await;
    let page = app
        .get(&again, "/login/second-factor")
        .await
        .text()
        .await
        .expect("body");
    let csrf = hidden_field(&page, "csrf").expect("csrf");
    let replay = again
        .post(app.url("/login/second-factor"))
        .header(reqwest::header::ACCEPT, BROWSER_ACCEPT)
        .form(&[("csrf", csrf.as_str()), ("code", code(&key, 1).as_str())])
        .send()
        .await
        .expect("POST");
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    app.audit(
        "event = 'sign_in_failed' AND reason = 'bad_second_factor'",
        2,
    )
    .await;
}

/// Completes the second step with `code`; returns the response.
async fn second_step(
    app: &TestApp,
    browser: &Browser,
    username: &str,
    code: &str,
) -> reqwest::Response {
    let response = app.post_login(browser, username, PASSWORD, "").await;
    if response.status() != StatusCode::SEE_OTHER {
        return response;
    }
    assert_eq!(location(&response), "/login/second-factor?next=");
    let page = app
        .get(browser, "/login/second-factor")
        .await
        .text()
        .await
        .expect("body");
    let csrf = hidden_field(&page, "csrf").expect("csrf");
    browser
        .post(app.url("/login/second-factor"))
        .header(reqwest::header::ACCEPT, BROWSER_ACCEPT)
        .form(&[("csrf", csrf.as_str()), ("code", code)])
        .send()
        .await
        .expect("POST")
}

#[tokio::test]
async fn a_recovery_code_works_once_and_is_announced() {
    let app = TestApp::spawn().await;
    let first = app.user_client("rio", Role::Member).await;
    let (_, codes) = enrol(&app, &first).await;
    let browser = app.client();
    let response = second_step(&app, &browser, "rio", &codes[3].to_uppercase()).await;
    assert_eq!(app.landing(&browser, response).await, "/account");
    let page = app
        .get(&browser, "/account")
        .await
        .text()
        .await
        .expect("body");
    assert!(
        page.contains("A recovery code was used to sign in")
            && page.contains("9 recovery codes left"),
        "{page}"
    );
    let again = second_step(&app, &app.client(), "rio", &codes[3]).await;
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn wrong_codes_are_throttled_like_passwords() {
    let app = TestApp::spawn().await;
    let first = app.user_client("ted", Role::Member).await;
    enrol(&app, &first).await;
    let browser = app.client();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(second_step(&app, &browser, "ted", "111111").await.status());
    }
    assert_eq!(statuses[..5], [StatusCode::UNAUTHORIZED; 5], "{statuses:?}");
    assert_eq!(statuses[5], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
}

#[tokio::test]
async fn the_second_step_without_its_first_is_sign_in_again() {
    let app = TestApp::spawn().await;
    let response = app
        .get(&app.client(), "/login/second-factor?next=%2Fadmin")
        .await;
    assert_eq!(
        location(&response),
        "/login?next=%2Fadmin&notice=second_step_expired"
    );
    let page = app
        .get(&app.client(), "/login?notice=second_step_expired")
        .await
        .text()
        .await
        .expect("body");
    assert!(page.contains("not completed in time"), "{page}");
}

/// `--require-mfa admins` (the default): an administrator without a second factor is sent
/// to enrolment before any admin page; once enrolled, the admin pages open.
#[tokio::test]
async fn admins_are_sent_to_enrolment_first() {
    let app = TestApp::spawn_with(|s| s.require_mfa = RequireMfa::Admins).await;
    let admin = app.user_client("root", Role::Admin).await;
    let response = app.get(&admin, "/admin").await;
    assert_eq!(location(&response), "/account/two-factor?required=1");
    let page = app
        .get(&admin, "/account/two-factor?required=1")
        .await
        .text()
        .await
        .expect("body");
    assert!(
        page.contains("asks administrators to turn on two-step verification"),
        "{page}"
    );
    // Every protected page but the account pages, for a program too.
    let api = app.get_json(&admin, "/api/me").await;
    assert_eq!(api.status(), StatusCode::FORBIDDEN);
    let body: serde_json::Value = api.json().await.expect("json");
    assert_eq!(body["reason"], "second_factor_required");
    app.audit("event = 'denied' AND reason = 'second_factor_required'", 1)
        .await;
    enrol(&app, &admin).await;
    assert_eq!(app.get(&admin, "/admin").await.status(), StatusCode::OK);
    assert_eq!(
        app.get_json(&admin, "/api/me").await.status(),
        StatusCode::OK
    );
    // It cannot be turned off while the policy covers the role.
    let csrf = app.session_csrf(&admin).await;
    let off = app
        .post_form_with_csrf(&admin, "/account/two-factor/disable", &[], &csrf)
        .await;
    assert_eq!(off.status(), StatusCode::CONFLICT);
    // A member is not covered: the API answers without a second factor.
    let member = app.user_client("plain", Role::Member).await;
    assert_eq!(
        app.get_json(&member, "/api/me").await.status(),
        StatusCode::OK
    );
}

/// `--require-mfa all`: everyone, members included, needs a second factor for the API too.
#[tokio::test]
async fn everyone_needs_a_second_factor_for_the_api_under_all() {
    let app = TestApp::spawn_with(|s| s.require_mfa = RequireMfa::All).await;
    let member = app.user_client("plain", Role::Member).await;
    let api = app.get_json(&member, "/api/me").await;
    assert_eq!(api.status(), StatusCode::FORBIDDEN);
    let body: serde_json::Value = api.json().await.expect("json");
    assert_eq!(body["reason"], "second_factor_required");
    enrol(&app, &member).await;
    assert_eq!(
        app.get_json(&member, "/api/me").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_admin_resets_a_lost_second_factor() {
    let app = TestApp::spawn().await;
    let member = app.user_client("lu", Role::Member).await;
    enrol(&app, &member).await;
    let admin = app.user_client("root", Role::Admin).await;
    let lu = app.user_id("lu").await;
    let action = format!("/admin/users/{lu}/second-factor/reset");
    let confirm = app.post_form(&admin, &action, &[]).await;
    assert_eq!(confirm.status(), StatusCode::OK);
    let done = app.post_form(&admin, &action, &[("confirm", "yes")]).await;
    assert_eq!(
        location(&done),
        format!("/admin/users/{lu}?done=second_factor_reset")
    );
    let response = app.get(&member, "/account").await;
    assert_login_redirect(response, "revoked", Some("/account")).await;
    app.login(&app.client(), "lu").await;
    app.audit(
        "event = 'second_factor_reset' AND target = 'lu' AND username = 'root'",
        1,
    )
    .await;
}

/// Re-authentication asks for the code too when a second factor is on.
#[tokio::test]
async fn reauthentication_asks_for_the_code_when_enrolled() {
    let app = TestApp::spawn().await;
    let admin = app.user_client("root", Role::Admin).await;
    let (key, _) = enrol(&app, &admin).await;
    sqlx::query("UPDATE sessions SET authenticated_at = now() - interval '1 hour'")
        .execute(&app.pool)
        .await
        .expect("age");
    let page = app
        .get(&admin, "/reauth?next=/admin")
        .await
        .text()
        .await
        .expect("body");
    assert!(page.contains("Code from your authenticator app"), "{page}");
    let csrf = hidden_field(&page, "csrf").expect("csrf");
    let without = app
        .post_form_with_csrf(
            &admin,
            "/reauth",
            &[("password", PASSWORD), ("next", "/admin")],
            &csrf,
        )
        .await;
    assert_eq!(without.status(), StatusCode::UNAUTHORIZED);
    let with = app
        .post_form_with_csrf(
            &admin,
            "/reauth",
            &[
                ("password", PASSWORD),
                ("code", &code(&key, 1)),
                ("next", "/admin"),
            ],
            &csrf,
        )
        .await;
    assert_eq!(location(&with), "/admin");
}

/// Turning the second factor off signs out the owner's other sessions (ASVS 5.0 7.4.3).
#[tokio::test]
async fn turning_it_off_signs_out_the_other_sessions() {
    let app = TestApp::spawn().await;
    let first = app.user_client("ivy", Role::Member).await;
    let (key, _) = enrol(&app, &first).await;
    let other = app.client();
    let response = second_step(&app, &other, "ivy", &code(&key, 1)).await;
    assert_eq!(app.landing(&other, response).await, "/account");
    let csrf = app.session_csrf(&first).await;
    let off = app
        .post_form_with_csrf(&first, "/account/two-factor/disable", &[], &csrf)
        .await;
    assert_eq!(location(&off), "/account/two-factor?done=disabled");
    assert_eq!(app.get(&first, "/account").await.status(), StatusCode::OK);
    let response = app.get(&other, "/account").await;
    assert_login_redirect(response, "revoked", Some("/account")).await;
    app.audit("event = 'second_factor_disabled' AND username = 'ivy'", 1)
        .await;
    // Signing in needs the password only again.
    app.login(&app.client(), "ivy").await;
}

/// `users.has_second_factor`, which every session lookup reads, as the database keeps it
/// (migration 0015), against the tables it summarises; and the two columns behind it
/// (the account page shows them) against theirs.
async fn flag(app: &TestApp, user_id: i64) -> (bool, bool) {
    let (flag, app_on, keys, truth, app_truth, keys_truth): (bool, bool, i32, bool, bool, i64) =
        sqlx::query_as(
            "SELECT has_second_factor, totp_enabled, passkey_count, \
                    EXISTS (SELECT 1 FROM totp_credentials \
                            WHERE user_id = $1 AND enabled_at IS NOT NULL) \
                    OR EXISTS (SELECT 1 FROM passkeys WHERE user_id = $1), \
                    EXISTS (SELECT 1 FROM totp_credentials \
                            WHERE user_id = $1 AND enabled_at IS NOT NULL), \
                    (SELECT count(*) FROM passkeys WHERE user_id = $1) \
             FROM users WHERE id = $1",
        )
        .bind(user_id)
        .fetch_one(&app.pool)
        .await
        .expect("flag");
    assert_eq!((app_on, i64::from(keys)), (app_truth, keys_truth));
    (flag, truth)
}

/// The users row's version: unchanged when nothing was written to it.
async fn row_version(app: &TestApp, user_id: i64) -> String {
    sqlx::query_scalar("SELECT xmin::text FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_one(&app.pool)
        .await
        .expect("xmin")
}

async fn add_passkey(executor: impl sqlx::PgExecutor<'_>, user_id: i64, name: &str) {
    sqlx::query(
        "INSERT INTO passkeys (user_id, credential_id, name, credential) \
         VALUES ($1, $2::bytea, $2, '{}')",
    )
    .bind(user_id)
    .bind(name)
    .execute(executor)
    .await
    .expect("passkey");
}

/// Every change to the factor tables, by the app or by hand, keeps the flag equal to what
/// the tables say; a change that cannot change it (a code used) writes no users row.
#[tokio::test]
async fn the_second_factor_flag_follows_the_factor_tables() {
    let app = TestApp::spawn().await;
    let client = app.user_client("kit", Role::Member).await;
    let kit = app.user_id("kit").await;
    assert_eq!(flag(&app, kit).await, (false, false));

    // Through the app: enrolment starts with a disabled credential, the first code enables it.
    enrol(&app, &client).await;
    assert_eq!(flag(&app, kit).await, (true, true));
    let before = row_version(&app, kit).await;
    sqlx::query("UPDATE totp_credentials SET last_used_step = last_used_step + 1")
        .execute(&app.pool)
        .await
        .expect("step");
    assert_eq!(row_version(&app, kit).await, before, "no users row written");
    add_passkey(&app.pool, kit, "first").await;
    add_passkey(&app.pool, kit, "second").await;
    assert_eq!(flag(&app, kit).await, (true, true));
    let page = app
        .get(&client, "/account")
        .await
        .text()
        .await
        .expect("page");
    assert!(page.contains("2 passkeys"), "{page}");

    // Turning the app off through the account page leaves the passkeys.
    let csrf = app.session_csrf(&client).await;
    let off = app
        .post_form_with_csrf(&client, "/account/two-factor/disable", &[], &csrf)
        .await;
    assert_eq!(location(&off), "/account/two-factor?done=disabled");
    assert_eq!(flag(&app, kit).await, (true, true));

    sqlx::query("DELETE FROM passkeys WHERE name = 'first'")
        .execute(&app.pool)
        .await
        .expect("delete");
    assert_eq!(flag(&app, kit).await, (true, true));
    sqlx::query("DELETE FROM passkeys WHERE name = 'second'")
        .execute(&app.pool)
        .await
        .expect("delete");
    assert_eq!(flag(&app, kit).await, (false, false));

    // An enrolment that never got its first code is not a second factor; a user with
    // factors can still be deleted (the cascade's triggers find no row to update).
    sqlx::query("INSERT INTO totp_credentials (user_id, secret) VALUES ($1, $2)")
        .bind(kit)
        .bind(vec![7u8; 20])
        .execute(&app.pool)
        .await
        .expect("pending");
    assert_eq!(flag(&app, kit).await, (false, false));
    add_passkey(&app.pool, kit, "third").await;
    assert_eq!(flag(&app, kit).await, (true, true));
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(kit)
        .execute(&app.pool)
        .await
        .expect("delete user");
}

/// Two simultaneous removals, the app and the last passkey, in separate transactions: each
/// would still see the other's factor in its own snapshot, and without the trigger's lock
/// the flag stayed `true` for an account with no second factor, which `--require-mfa`
/// would then let through. With it, the second waits for the first and sees its commit.
#[tokio::test]
async fn simultaneous_removals_of_both_factors_leave_no_stale_flag() {
    let app = TestApp::spawn_with(|s| s.require_mfa = RequireMfa::All).await;
    let client = app.user_client("rex", Role::Member).await;
    let rex = app.user_id("rex").await;
    enrol(&app, &client).await;
    add_passkey(&app.pool, rex, "only").await;
    assert_eq!(flag(&app, rex).await, (true, true));
    let api = app.get_json(&client, "/api/me").await;
    assert_eq!(api.status(), StatusCode::OK);

    let mut first = app.pool.begin().await.expect("begin");
    sqlx::query("DELETE FROM totp_credentials WHERE user_id = $1")
        .bind(rex)
        .execute(&mut *first)
        .await
        .expect("delete app");
    let pool = app.pool.clone();
    let second = tokio::spawn(async move {
        let mut tx = pool.begin().await.expect("begin");
        sqlx::query("DELETE FROM passkeys WHERE user_id = $1")
            .bind(rex)
            .execute(&mut *tx)
            .await
            .expect("delete passkey");
        tx.commit().await.expect("commit");
    });
    // Let the second removal reach the lock it waits on.
    sleep(200).await;
    assert!(
        !second.is_finished(),
        "the second removal waits for the first"
    );
    first.commit().await.expect("commit");
    second.await.expect("second removal");
    assert_eq!(flag(&app, rex).await, (false, false));
    let api = app.get_json(&client, "/api/me").await;
    assert_eq!(api.status(), StatusCode::FORBIDDEN);
    let body: serde_json::Value = api.json().await.expect("json");
    assert_eq!(body["reason"], "second_factor_required");
}

/// Two passkeys added at once for one user, while the first transaction also holds the
/// foreign-key lock (KEY SHARE) a recovery code's insert takes on the user's row: both
/// land. A trigger taking FOR UPDATE there waited on that lock while holding its own,
/// and PostgreSQL aborted one of the two as a deadlock.
#[tokio::test]
async fn simultaneous_passkeys_for_one_user_both_land() {
    let app = TestApp::spawn().await;
    app.create_user("ada", Role::Member).await;
    let ada = app.user_id("ada").await;
    let mut first = app.pool.begin().await.expect("begin");
    sqlx::query("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, '\\x00')")
        .bind(ada)
        .execute(&mut *first)
        .await
        .expect("recovery code");
    let pool = app.pool.clone();
    let second = tokio::spawn(async move {
        let mut tx = pool.begin().await.expect("begin");
        add_passkey(&mut *tx, ada, "two").await;
        tx.commit().await.expect("commit");
    });
    sleep(200).await;
    add_passkey(&mut *first, ada, "one").await;
    first.commit().await.expect("commit");
    second.await.expect("second passkey");
    assert_eq!(flag(&app, ada).await, (true, true));
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM passkeys WHERE user_id = {ada}"
        ))
        .await,
        2
    );
}

/// The recovery-code summary the account page reads from the user's row (migration 0016)
/// and what `recovery_codes` says: codes left, and the last use.
async fn codes_summary(app: &TestApp, user_id: i64) -> (i64, Option<time::OffsetDateTime>) {
    let (left, used, left_truth, used_truth): (i32, Option<time::OffsetDateTime>, i64, _) =
        sqlx::query_as(
            "SELECT recovery_codes_left, recovery_code_used_at, \
                    (SELECT count(*) FROM recovery_codes \
                     WHERE user_id = $1 AND used_at IS NULL), \
                    (SELECT max(used_at) FROM recovery_codes WHERE user_id = $1) \
             FROM users WHERE id = $1",
        )
        .bind(user_id)
        .fetch_one(&app.pool)
        .await
        .expect("summary");
    assert_eq!((i64::from(left), used), (left_truth, used_truth));
    (left_truth, used_truth)
}

/// Enrolment, a code spent, new codes, turning the factor off, and statements typed by
/// hand all keep the summary equal to the table; a statement that changes neither figure
/// writes no users row.
#[tokio::test]
async fn the_recovery_code_summary_follows_the_codes() {
    let app = TestApp::spawn().await;
    let client = app.user_client("una", Role::Member).await;
    let una = app.user_id("una").await;
    assert_eq!(codes_summary(&app, una).await, (0, None));
    let (_, codes) = enrol(&app, &client).await;
    assert_eq!(codes_summary(&app, una).await, (10, None));

    let browser = app.client();
    let response = second_step(&app, &browser, "una", &codes[0]).await;
    assert_eq!(app.landing(&browser, response).await, "/account");
    let (left, used) = codes_summary(&app, una).await;
    assert_eq!(left, 9);
    assert!(used.is_some(), "the use is recorded");
    let before = row_version(&app, una).await;
    sqlx::query("UPDATE recovery_codes SET created_at = created_at WHERE user_id = $1")
        .bind(una)
        .execute(&app.pool)
        .await
        .expect("touch");
    assert_eq!(row_version(&app, una).await, before, "no users row written");

    // New codes: ten unused, and the old codes' use is forgotten with them.
    let csrf = app.session_csrf(&browser).await;
    let fresh = app
        .post_form_with_csrf(&browser, "/account/two-factor/recovery-codes", &[], &csrf)
        .await;
    assert_eq!(fresh.status(), StatusCode::OK);
    assert_eq!(codes_summary(&app, una).await, (10, None));
    let page = app
        .get(&browser, "/account")
        .await
        .text()
        .await
        .expect("page");
    assert!(!page.contains("A recovery code was used"), "{page}");

    let off = app
        .post_form_with_csrf(&browser, "/account/two-factor/disable", &[], &csrf)
        .await;
    assert_eq!(location(&off), "/account/two-factor?done=disabled");
    assert_eq!(codes_summary(&app, una).await, (0, None));

    // A user with codes can still be deleted (the cascade's trigger finds no row to update).
    sqlx::query(
        "INSERT INTO recovery_codes (user_id, code_hash) \
         SELECT $1, int8send(g) FROM generate_series(1, 3) g",
    )
    .bind(una)
    .execute(&app.pool)
    .await
    .expect("codes");
    assert_eq!(codes_summary(&app, una).await, (3, None));
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(una)
        .execute(&app.pool)
        .await
        .expect("delete user");
}

/// Two codes spent at once in separate transactions: each statement's snapshot misses the
/// other's, and without the trigger's lock both counted 9 left of 10. With it, the second
/// waits for the first and counts 8.
#[tokio::test]
async fn simultaneous_code_uses_leave_the_right_count() {
    let app = TestApp::spawn().await;
    app.create_user("vic", Role::Member).await;
    let vic = app.user_id("vic").await;
    sqlx::query(
        "INSERT INTO recovery_codes (user_id, code_hash) \
         SELECT $1, int8send(g) FROM generate_series(1, 10) g",
    )
    .bind(vic)
    .execute(&app.pool)
    .await
    .expect("codes");
    let spend = "UPDATE recovery_codes SET used_at = now() WHERE user_id = $1 AND code_hash = $2";
    let mut first = app.pool.begin().await.expect("begin");
    sqlx::query(spend)
        .bind(vic)
        .bind(1_i64.to_be_bytes().to_vec())
        .execute(&mut *first)
        .await
        .expect("first use");
    let pool = app.pool.clone();
    let second = tokio::spawn(async move {
        let mut tx = pool.begin().await.expect("begin");
        sqlx::query(spend)
            .bind(vic)
            .bind(2_i64.to_be_bytes().to_vec())
            .execute(&mut *tx)
            .await
            .expect("second use");
        tx.commit().await.expect("commit");
    });
    sleep(200).await;
    assert!(!second.is_finished(), "the second use waits for the first");
    first.commit().await.expect("commit");
    second.await.expect("second use");
    let (left, used) = codes_summary(&app, vic).await;
    assert_eq!(left, 8);
    assert!(used.is_some());
}
