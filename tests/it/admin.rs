//! The admin page: every action, its guard rails, CSRF, and its reach across instances.

use portcullis::auth::Role;
use portcullis::{accounts, accounts::admin, audit::Actor, web::RouteSpec};
use reqwest::{Method, StatusCode};

use crate::{
    routes::{admin_routes, fill_path},
    support::*,
};

/// An app with a signed-in administrator "root".
async fn with_admin() -> (TestApp, Browser) {
    let app = TestApp::spawn().await;
    let admin = app.user_client("root", Role::Admin).await;
    (app, admin)
}

#[tokio::test]
async fn creating_a_user_shows_their_link_and_invalid_fields_are_explained_inline() {
    let (app, admin) = with_admin().await;
    let response = app
        .post_form(
            &admin,
            "/admin/users",
            &[("username", "  Nina "), ("role", "editor")],
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{}",
        describe(response).await
    );
    let page = response.text().await.expect("body");
    assert!(
        page.contains("Invitation link for Nina") && page.contains("User Nina created (editor)"),
        "{page}"
    );
    // Trimmed, and the new user signs in once they chose their password.
    crate::links::use_link(&app, &crate::links::link_in(&page), PASSWORD).await;
    let nina = app.client();
    app.login(&nina, "nina").await;
    assert_eq!(app.get(&nina, "/reports").await.status(), StatusCode::OK);
    let rows = app
        .audit("event = 'user_created' AND target = 'Nina'", 1)
        .await;
    assert_eq!(rows[0].username.as_deref(), Some("root"));
    assert_eq!(rows[0].target.as_deref(), Some("Nina"));

    // Invalid fields: one message each, the form keeps its values.
    let response = app
        .post_form(
            &admin,
            "/admin/users",
            &[("username", "bad name"), ("role", "root")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let page = response.text().await.expect("body");
    assert!(page.contains("no spaces"), "{page}");
    assert!(page.contains("Choose a role."), "{page}");
    assert!(
        page.contains(r#"value="bad name""#),
        "the username is kept: {page}"
    );
    assert!(
        !page.contains("type=\"password\""),
        "an administrator never types a password for someone else: {page}"
    );

    // Case-insensitively unique.
    let response = app
        .post_form(
            &admin,
            "/admin/users",
            &[("username", "NINA"), ("role", "member")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        response
            .text()
            .await
            .expect("body")
            .contains("already exists")
    );
    let too_long = "x".repeat(65);
    let response = app
        .post_form(
            &admin,
            "/admin/users",
            &[("username", &too_long), ("role", "member")],
        )
        .await;
    assert!(response.text().await.expect("body").contains("at most 64"));
}

#[tokio::test]
async fn the_user_list_searches_and_pages() {
    let (app, admin) = with_admin().await;
    for n in 0..25 {
        admin::create(
            &app.pool,
            &app.hasher,
            &Actor::cli(),
            &format!("user{n:02}"),
            PASSWORD,
            Role::Member,
            8,
        )
        .await
        .expect("create");
    }
    let first = app.get(&admin, "/admin").await.text().await.expect("body");
    assert!(
        first.contains("26 users") && first.contains("Page 1 of 2"),
        "{first}"
    );
    assert!(first.contains("root") && first.contains("user00"));
    let second = app
        .get(&admin, "/admin?page=2")
        .await
        .text()
        .await
        .expect("body");
    assert!(
        second.contains("user24") && !second.contains(">user00<"),
        "{second}"
    );
    let found = app
        .get(&admin, "/admin?q=USER1")
        .await
        .text()
        .await
        .expect("body");
    assert!(
        found.contains("10 users") && found.contains("user19") && !found.contains(">user20<"),
        "{found}"
    );
    // Wildcards are literal.
    let none = app
        .get(&admin, "/admin?q=%25")
        .await
        .text()
        .await
        .expect("body");
    assert!(none.contains("0 users"), "{none}");
    // Absurd page numbers are clamped, not errors.
    assert_eq!(
        app.get(&admin, "/admin?page=99999").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get(&admin, "/admin?page=-3").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn role_changes_apply_to_the_users_next_request() {
    let (app, admin) = with_admin().await;
    let member = app.user_client("mo", Role::Member).await;
    let id = app.user_id("mo").await;
    assert_eq!(
        app.get(&member, "/reports").await.status(),
        StatusCode::FORBIDDEN
    );
    let response = app
        .post_form(
            &admin,
            &format!("/admin/users/{id}/role"),
            &[("role", "editor")],
        )
        .await;
    assert_eq!(
        location(&response),
        format!("/admin/users/{id}?done=role_changed")
    );
    assert_eq!(app.get(&member, "/reports").await.status(), StatusCode::OK);
    let rows = app.audit("event = 'role_changed'", 1).await;
    assert_eq!(
        rows[0]
            .detail
            .as_ref()
            .map(|d| (d["from"].clone(), d["to"].clone())),
        Some(("member".into(), "editor".into()))
    );
    // Nonsense roles are refused with a message.
    let response = app
        .post_form(
            &admin,
            &format!("/admin/users/{id}/role"),
            &[("role", "emperor")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
}

#[tokio::test]
async fn disabling_asks_first_then_signs_the_user_out_everywhere() {
    let (app, admin) = with_admin().await;
    let victim = app.user_client("vic", Role::Member).await;
    let id = app.user_id("vic").await;
    let response = app
        .post_form(&admin, &format!("/admin/users/{id}/disable"), &[])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = response.text().await.expect("body");
    assert!(
        page.contains("Disable vic?") && page.contains(r#"name="confirm" value="yes""#),
        "{page}"
    );
    assert_eq!(
        app.get(&victim, "/account").await.status(),
        StatusCode::OK,
        "nothing changed yet"
    );

    let response = app
        .post_form(
            &admin,
            &format!("/admin/users/{id}/disable"),
            &[("confirm", "yes")],
        )
        .await;
    assert_eq!(
        location(&response),
        format!("/admin/users/{id}?done=disabled")
    );
    assert_login_redirect(
        app.get(&victim, "/account").await,
        "revoked",
        Some("/account"),
    )
    .await;
    assert_eq!(
        app.post_login(&app.client(), "vic", PASSWORD, "")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );

    let response = app
        .post_form(&admin, &format!("/admin/users/{id}/enable"), &[])
        .await;
    assert_eq!(
        location(&response),
        format!("/admin/users/{id}?done=enabled")
    );
    app.login(&app.client(), "vic").await;
    app.audit("event IN ('user_disabled', 'user_enabled')", 2)
        .await;
}

#[tokio::test]
async fn a_password_link_changes_nothing_until_used_and_not_for_oneself() {
    let (app, admin) = with_admin().await;
    let user = app.user_client("rita", Role::Member).await;
    let link = crate::links::reset_link(&app, &admin, "rita").await;
    assert_eq!(app.get(&user, "/account").await.status(), StatusCode::OK);
    assert_eq!(
        app.post_login(&app.client(), "rita", PASSWORD, "")
            .await
            .status(),
        StatusCode::SEE_OTHER,
        "the old password works until the link is used"
    );
    crate::links::use_link(&app, &link, "a new long password").await;
    assert_login_redirect(
        app.get(&user, "/account").await,
        "revoked",
        Some("/account"),
    )
    .await;
    // An administrator changes their own password on the account page.
    let own = app.user_id("root").await;
    let response = app
        .post_form(&admin, &format!("/admin/users/{own}/password-link"), &[])
        .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert!(
        response
            .text()
            .await
            .expect("body")
            .contains("account page")
    );
}

#[tokio::test]
async fn deleting_asks_first_and_the_user_is_gone_on_their_next_request() {
    let (app, admin) = with_admin().await;
    let user = app.user_client("dora", Role::Editor).await;
    let id = app.user_id("dora").await;
    let path = format!("/admin/users/{id}/delete");
    let page = app
        .post_form(&admin, &path, &[])
        .await
        .text()
        .await
        .expect("body");
    assert!(page.contains("Delete dora for good?"), "{page}");
    let response = app.post_form(&admin, &path, &[("confirm", "yes")]).await;
    assert_eq!(location(&response), "/admin?done=deleted");
    assert_login_redirect(
        app.get(&user, "/reports").await,
        "required",
        Some("/reports"),
    )
    .await;
    assert_eq!(
        app.get(&admin, &format!("/admin/users/{id}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let rows = app.audit("event = 'user_deleted'", 1).await;
    assert_eq!(rows[0].target.as_deref(), Some("dora"));
}

#[tokio::test]
async fn sessions_can_be_listed_and_revoked_one_or_all() {
    let (app, admin) = with_admin().await;
    let first = app.user_client("sam", Role::Member).await;
    let second = app.client();
    app.login(&second, "sam").await;
    let id = app.user_id("sam").await;
    let page = app
        .get(&admin, &format!("/admin/users/{id}"))
        .await
        .text()
        .await
        .expect("body");
    assert_eq!(
        page.matches("/sessions/").count() - page.matches("revoke-all").count(),
        2,
        "{page}"
    );

    let session: i64 = sqlx::query_scalar("SELECT min(id) FROM sessions WHERE user_id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .expect("session");
    let response = app
        .post_form(
            &admin,
            &format!("/admin/users/{id}/sessions/{session}/revoke"),
            &[],
        )
        .await;
    assert_eq!(
        location(&response),
        format!("/admin/users/{id}?done=session_revoked")
    );
    assert_login_redirect(
        app.get(&first, "/account").await,
        "revoked",
        Some("/account"),
    )
    .await;
    assert_eq!(app.get(&second, "/account").await.status(), StatusCode::OK);

    let path = format!("/admin/users/{id}/sessions/revoke-all");
    let page = app
        .post_form(&admin, &path, &[])
        .await
        .text()
        .await
        .expect("body");
    assert!(page.contains("Sign sam out everywhere?"), "{page}");
    app.post_form(&admin, &path, &[("confirm", "yes")]).await;
    assert_login_redirect(
        app.get(&second, "/account").await,
        "revoked",
        Some("/account"),
    )
    .await;
    // Another user's session id cannot be revoked through this user's page.
    let admin_session: i64 =
        sqlx::query_scalar("SELECT id FROM sessions WHERE user_id = $1 AND revoked_at IS NULL")
            .bind(app.user_id("root").await)
            .fetch_one(&app.pool)
            .await
            .expect("admin session");
    let response = app
        .post_form(
            &admin,
            &format!("/admin/users/{id}/sessions/{admin_session}/revoke"),
            &[],
        )
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    app.audit("event IN ('session_revoked', 'sessions_revoked')", 2)
        .await;
}

#[tokio::test]
async fn the_last_admin_cannot_be_demoted_disabled_or_deleted() {
    let (app, root) = with_admin().await;
    let id = app.user_id("root").await;
    // Acting on yourself: disabling and deleting are refused outright.
    for action in ["disable", "delete"] {
        let response = app
            .post_form(
                &root,
                &format!("/admin/users/{id}/{action}"),
                &[("confirm", "yes")],
            )
            .await;
        assert_eq!(response.status(), StatusCode::CONFLICT, "{action}");
        assert!(
            response
                .text()
                .await
                .expect("body")
                .contains("your own account")
        );
    }
    // Demoting yourself asks first, and as the last admin is refused even then.
    let page = app
        .post_form(
            &root,
            &format!("/admin/users/{id}/role"),
            &[("role", "editor")],
        )
        .await;
    assert!(
        page.text()
            .await
            .expect("body")
            .contains("Change your own role to editor?")
    );
    let response = app
        .post_form(
            &root,
            &format!("/admin/users/{id}/role"),
            &[("role", "editor"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert!(
        response
            .text()
            .await
            .expect("body")
            .contains("last enabled administrator")
    );
    assert_eq!(app.get(&root, "/admin").await.status(), StatusCode::OK);

    // With a second admin who is disabled, root is still the last enabled one.
    app.create_user("ops", Role::Admin).await;
    let ops = app.user_id("ops").await;
    app.post_form(
        &root,
        &format!("/admin/users/{ops}/disable"),
        &[("confirm", "yes")],
    )
    .await;
    let response = app
        .post_form(
            &root,
            &format!("/admin/users/{id}/role"),
            &[("role", "member"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    app.post_form(&root, &format!("/admin/users/{ops}/enable"), &[])
        .await;
    // Now root may demote itself (after confirming) and loses the admin pages at once.
    let response = app
        .post_form(
            &root,
            &format!("/admin/users/{id}/role"),
            &[("role", "member"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.get(&root, "/admin").await.status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn two_admins_demoting_each_other_at_once_leave_one_admin() {
    let app = TestApp::spawn().await;
    let a = app.user_client("ada", Role::Admin).await;
    let b = app.user_client("bob", Role::Admin).await;
    let (ida, idb) = (app.user_id("ada").await, app.user_id("bob").await);
    let csrf_a = app.session_csrf(&a).await;
    let csrf_b = app.session_csrf(&b).await;
    let path_b = format!("/admin/users/{idb}/role");
    let path_a = format!("/admin/users/{ida}/role");
    let fields = [("role", "member")];
    let (ra, rb) = tokio::join!(
        app.post_form_with_csrf(&a, &path_b, &fields, &csrf_a),
        app.post_form_with_csrf(&b, &path_a, &fields, &csrf_b),
    );
    let statuses = [ra.status(), rb.status()];
    let admins = app
        .count("SELECT count(*) FROM users WHERE role = 'admin'")
        .await;
    assert_eq!(admins, 1, "statuses {statuses:?}");
}

/// A plausible value for an admin form's field: the requests below never reach a handler,
/// so only the shape matters.
fn sample(field: &str) -> &'static str {
    match field {
        "username" => "x1",
        "password" => PASSWORD,
        "role" => "admin",
        "confirm" => "yes",
        "scope" => "account",
        "note" => "no",
        _ => "x",
    }
}

/// A user "tgt" with a pending access request: (user id, request id).
async fn tgt_with_a_request(app: &TestApp) -> (i64, i64) {
    let tgt = app.user_client("tgt", Role::Member).await;
    app.post_form(
        &tgt,
        "/access-requests",
        &[("role", "editor"), ("path", "/reports")],
    )
    .await;
    let request = app.count("SELECT max(id) FROM access_requests").await;
    (app.user_id("tgt").await, request)
}

/// Every admin route of the route table with `method`, its path filled with tgt's ids
/// (`{session}`: 1).
fn admin_routes_for(
    method: Method,
    (user, request): (i64, i64),
) -> Vec<(&'static RouteSpec, String)> {
    admin_routes()
        .into_iter()
        .filter(|spec| spec.method == method)
        .map(|spec| {
            let id = if spec.path.starts_with("/admin/requests/") {
                request
            } else {
                user
            };
            let path = fill_path(spec.path, |param| match param {
                "id" => id.to_string(),
                _ => "1".into(),
            });
            (spec, path)
        })
        .collect()
}

/// Nothing the refused requests below asked for happened.
async fn assert_tgt_untouched(app: &TestApp) {
    let user = accounts::find(&app.pool, "tgt").await.expect("still there");
    assert_eq!(user.role, Role::Member);
    assert!(user.disabled_at.is_none());
    assert_eq!(
        app.count("SELECT count(*) FROM users WHERE username = 'x1'")
            .await,
        0
    );
    assert_eq!(
        app.count("SELECT count(*) FROM access_requests WHERE status = 'pending'")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM password_links").await,
        0,
        "no link was issued"
    );
}

#[tokio::test]
async fn every_admin_form_checks_csrf() {
    let (app, admin) = with_admin().await;
    let forms = admin_routes_for(Method::POST, tgt_with_a_request(&app).await);
    let paths: Vec<&str> = forms.iter().map(|(spec, _)| spec.path).collect();
    for form in [
        "/admin/users/{id}/role",
        "/admin/requests/{id}/grant",
        "/admin/requests/{id}/decline",
        "/admin/throttles/clear",
    ] {
        assert!(paths.contains(&form), "{form} is not in {paths:?}");
    }
    for (spec, path) in &forms {
        let inputs = spec.inputs();
        assert!(inputs.signed, "{path} is not a signed form");
        let fields: Vec<(&str, &str)> = inputs
            .form
            .iter()
            .flatten()
            .map(|field| (field.name, sample(field.name)))
            .collect();
        for token in ["", "forged"] {
            let response = app.post_form_with_csrf(&admin, path, &fields, token).await;
            assert_eq!(
                response.status(),
                StatusCode::FORBIDDEN,
                "{path} with token {token:?}"
            );
            assert!(
                response
                    .text()
                    .await
                    .expect("body")
                    .contains("This form has expired")
            );
        }
    }
    assert_tgt_untouched(&app).await;
    let expected = 2 * forms.len() as i64;
    let rows = app
        .audit("status = 403 AND reason = 'csrf'", expected)
        .await;
    assert_eq!(rows.len() as i64, expected);
    assert!(rows.iter().all(|r| r.username.as_deref() == Some("root")));
}

#[tokio::test]
async fn non_admins_get_the_403_page_on_every_admin_route() {
    let app = TestApp::spawn().await;
    let ids = tgt_with_a_request(&app).await;
    let (gets, posts) = (
        admin_routes_for(Method::GET, ids),
        admin_routes_for(Method::POST, ids),
    );
    for role in [Role::Member, Role::Editor] {
        let browser = app.user_client(&format!("not-admin-{role}"), role).await;
        for (_, path) in &gets {
            let response = app.get(&browser, path).await;
            assert_eq!(
                response.status(),
                StatusCode::FORBIDDEN,
                "{role} GET {path}"
            );
            assert!(
                response
                    .text()
                    .await
                    .expect("body")
                    .contains("needs the <strong>admin</strong> role")
            );
        }
        for (_, path) in &posts {
            let response = app
                .post_form(&browser, path, &[("role", "admin"), ("confirm", "yes")])
                .await;
            assert_eq!(
                response.status(),
                StatusCode::FORBIDDEN,
                "{role} POST {path}"
            );
        }
    }
    let anonymous = app.client();
    for (_, path) in &gets {
        assert_login_redirect(app.get(&anonymous, path).await, "required", Some(path)).await;
    }
    assert_eq!(
        app.get_json(&anonymous, "/admin/denials").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_tgt_untouched(&app).await;
}

/// Two instances on one database: what one does, the other enforces on the next request.
#[tokio::test]
async fn revocation_and_role_changes_cross_instances_at_once() {
    let a = TestApp::spawn().await;
    let b = TestApp::spawn_on(a.pool.clone(), a.db_name.clone(), |_| {}).await;
    a.create_user("root", Role::Admin).await;
    a.create_user("uma", Role::Member).await;
    let uma = a.client();
    a.login(&uma, "uma").await;
    // The session made on A works on B.
    assert_eq!(b.get(&uma, "/account").await.status(), StatusCode::OK);
    let admin = b.client();
    b.login(&admin, "root").await;
    let id = b.user_id("uma").await;
    b.post_form(
        &admin,
        &format!("/admin/users/{id}/role"),
        &[("role", "editor")],
    )
    .await;
    assert_eq!(a.get(&uma, "/reports").await.status(), StatusCode::OK);
    b.post_form(
        &admin,
        &format!("/admin/users/{id}/sessions/revoke-all"),
        &[("confirm", "yes")],
    )
    .await;
    assert_login_redirect(a.get(&uma, "/reports").await, "revoked", Some("/reports")).await;
    assert_login_redirect(b.get(&uma, "/reports").await, "revoked", Some("/reports")).await;

    // Signing out on B ends the session A knows: a copy of the cookie is dead on A.
    a.login(&uma, "uma").await;
    let cookie = a.session_cookie_of(&uma).await;
    let response = b.post_form(&uma, "/logout", &[]).await;
    assert_eq!(location(&response), "/login?notice=signed_out");
    let replay = a
        .bare_client()
        .get(a.url("/api/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("GET");
    assert_api_401(replay, "invalid_session").await;

    // Disabling on B signs the user out on A.
    a.login(&uma, "uma").await;
    assert_eq!(a.get(&uma, "/account").await.status(), StatusCode::OK);
    b.post_form(
        &admin,
        &format!("/admin/users/{id}/disable"),
        &[("confirm", "yes")],
    )
    .await;
    assert_login_redirect(a.get(&uma, "/account").await, "revoked", Some("/account")).await;
}

#[tokio::test]
async fn the_audit_log_filters_pages_and_exports_csv() {
    let (app, admin) = with_admin().await;
    for n in 0..3 {
        app.post_login(
            &app.client(),
            "root",
            &format!("=HYPERLINK(\"evil{n}\")"),
            "",
        )
        .await;
    }
    app.post_login(&app.client(), "=cmd|' /C calc'!A0", "x", "")
        .await;
    app.audit("event = 'sign_in_failed'", 4).await;
    let page = app
        .get(&admin, "/admin/audit?event=sign_in_failed")
        .await
        .text()
        .await
        .expect("body");
    assert!(page.contains("4 events"), "{page}");
    let page = app
        .get(&admin, "/admin/audit?event=sign_in_failed&username=root")
        .await
        .text()
        .await
        .expect("body");
    assert!(page.contains("3 events"), "{page}");
    let response = app
        .get(&admin, "/admin/audit.csv?event=sign_in_failed")
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/csv")
    );
    let csv = response.text().await.expect("csv");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 5, "{csv}");
    assert!(lines[0].starts_with("time,event,status,reason,username"));
    assert!(csv.contains("'=cmd"), "formulas are defused: {csv}");
    assert!(!csv.contains(",=cmd"), "{csv}");
    // Bad filter values are ignored, not errors.
    assert_eq!(
        app.get(&admin, "/admin/audit?status=abc&window=forever&page=0")
            .await
            .status(),
        StatusCode::OK
    );
}
