//! The user-administration service (`accounts::admin`) under concurrency: the rules hold
//! when changes race, whichever door (page, CLI, grant) they come through.

use std::sync::Arc;

use portcullis::{
    accounts::admin::{self, AdminError},
    audit::Actor,
    auth::Role,
};
use tokio::sync::Barrier;

use crate::support::TestApp;

/// Two administrators demote each other at the same moment, 50 times over: one change
/// wins, the other is refused, and one enabled administrator always remains.
#[tokio::test]
async fn two_admins_demoting_each_other_at_once_always_leave_one() {
    let app = TestApp::spawn().await;
    app.create_user("ada", Role::Admin).await;
    app.create_user("bob", Role::Admin).await;
    let ada = app.user_id("ada").await;
    let bob = app.user_id("bob").await;
    let admins = "SELECT count(*) FROM users WHERE role = 'admin' AND disabled_at IS NULL";
    for round in 0..50 {
        let barrier = Arc::new(Barrier::new(2));
        let demote = |actor: &'static str, target: i64| {
            let pool = app.pool.clone();
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                let actor = Actor::new(actor, Default::default());
                barrier.wait().await;
                admin::set_role(&pool, &actor, target, Role::Member).await
            })
        };
        let (a, b) = tokio::join!(demote("ada", bob), demote("bob", ada));
        let results = [a.expect("task"), b.expect("task")];
        let refused = results
            .iter()
            .filter(|r| matches!(r, Err(AdminError::LastAdmin(_))))
            .count();
        let other_errors: Vec<_> = results
            .iter()
            .filter(|r| matches!(r, Err(e) if !matches!(e, AdminError::LastAdmin(_))))
            .collect();
        assert!(other_errors.is_empty(), "round {round}: {other_errors:?}");
        assert_eq!(refused, 1, "round {round}: exactly one demotion is refused");
        assert_eq!(app.count(admins).await, 1, "round {round}");
        // Both admins again for the next round.
        for id in [ada, bob] {
            admin::set_role(&app.pool, &Actor::cli(), id, Role::Admin)
                .await
                .expect("promote");
        }
    }
    // Every change that happened is in the audit trail, with its actor.
    let changes = app
        .count("SELECT count(*) FROM audit_events WHERE event = 'role_changed'")
        .await;
    assert_eq!(changes, 50 * 2, "50 demotions and 50 promotions back");
}

/// Disabling and deleting race the same way: the last enabled administrator stays.
#[tokio::test]
async fn disable_and_delete_racing_keep_an_enabled_admin() {
    let app = TestApp::spawn().await;
    for round in 0..20 {
        let (a, b) = (format!("a{round}"), format!("b{round}"));
        app.create_user(&a, Role::Admin).await;
        app.create_user(&b, Role::Admin).await;
        let (a, b) = (app.user_id(&a).await, app.user_id(&b).await);
        // Only these two are administrators: the previous round's survivor steps down.
        sqlx::query("UPDATE users SET role = 'member' WHERE id <> $1 AND id <> $2")
            .bind(a)
            .bind(b)
            .execute(&app.pool)
            .await
            .expect("reset");
        let barrier = Arc::new(Barrier::new(2));
        let (pool1, pool2) = (app.pool.clone(), app.pool.clone());
        let (b1, b2) = (Arc::clone(&barrier), Arc::clone(&barrier));
        let disable = tokio::spawn(async move {
            b1.wait().await;
            admin::disable(&pool1, &Actor::cli(), a).await
        });
        let delete = tokio::spawn(async move {
            b2.wait().await;
            admin::delete(&pool2, &Actor::cli(), b).await
        });
        let (disabled, deleted) = (disable.await.expect("task"), delete.await.expect("task"));
        assert!(
            disabled.is_ok() != deleted.is_ok(),
            "round {round}: exactly one succeeds: {disabled:?} {deleted:?}"
        );
        let enabled_admins = app
            .count("SELECT count(*) FROM users WHERE role = 'admin' AND disabled_at IS NULL")
            .await;
        assert_eq!(enabled_admins, 1, "round {round}");
    }
}
