//! Portcullis: session sign-in with exact 401/403 semantics, backed by PostgreSQL.
//!
//! `App::build` assembles the web application from a database pool and settings;
//! `main.rs` only wires the command line to it.

pub mod accounts;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod config_check;
pub mod db;
pub mod demo;
pub mod display;
pub mod error;
pub mod logs;
pub mod mail;
pub mod server;
pub mod telemetry;
pub mod web;

use std::{future::Future, sync::Arc};

use axum::Router;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::{
    auth::{csrf::CsrfKey, password::PasswordHasher, store},
    config::Settings,
    web::{AppState, http::Site},
};

pub struct App {
    pub state: AppState,
    audit_writer: audit::AuditWriter,
}

/// The app's database connections: pages read through one pool; sign-ins, sign-outs and
/// session writes go through another, so that neither can take the other's connections
/// (`--db-sign-in-connections`). They may be the same pool.
#[derive(Clone)]
pub struct Pools {
    pub pages: PgPool,
    pub sign_in: PgPool,
}

impl Pools {
    /// One pool for everything.
    pub fn shared(pool: PgPool) -> Pools {
        Pools {
            sign_in: pool.clone(),
            pages: pool,
        }
    }
}

impl App {
    /// Builds the application on a migrated database.
    pub async fn build(pools: Pools, settings: Settings) -> anyhow::Result<App> {
        let hasher = PasswordHasher::start(settings.hash_workers)?;
        Self::build_with_pools(pools, settings, hasher).await
    }

    /// As [`App::build`], on one pool, with a hasher of the caller's (tests share one).
    pub async fn build_with_hasher(
        pool: PgPool,
        settings: Settings,
        hasher: PasswordHasher,
    ) -> anyhow::Result<App> {
        Self::build_with_pools(Pools::shared(pool), settings, hasher).await
    }

    pub async fn build_with_pools(
        pools: Pools,
        settings: Settings,
        hasher: PasswordHasher,
    ) -> anyhow::Result<App> {
        let Pools {
            pages: pool,
            sign_in: sign_in_pool,
        } = pools;
        telemetry::handle();
        let csrf = CsrfKey::load_or_create(&pool).await?;
        let passkeys = auth::passkey::Passkeys::new(&settings.relying_party)
            .map_err(|why| anyhow::anyhow!(why))?;
        let site = Arc::new(Site::new(&settings));
        let (audit, audit_writer) = audit::AuditLog::start(pool.clone());
        let mailer = match &settings.mail {
            Some(mail) => Some(mail::Mailer::start(mail, audit.clone())?),
            None => None,
        };
        let recovery = mailer.clone().map(|mailer| {
            accounts::recovery::Recovery::new(
                pool.clone(),
                mailer,
                audit.clone(),
                settings.site_url.clone(),
                settings.link_lifetime,
            )
        });
        Ok(App {
            state: AppState::new(web::Shared {
                pool,
                sign_in_pool,
                settings: Arc::new(settings),
                hasher,
                csrf,
                passkeys,
                site,
                audit,
                mailer,
                recovery,
                draining: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            }),
            audit_writer,
        })
    }

    pub fn router(&self) -> Router {
        web::router(self.state.clone())
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests and writes the
    /// queued audit events and refusal counts. Expired sessions and old audit events are swept
    /// meanwhile.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = server::Stop> + Send + 'static,
    ) -> std::io::Result<()> {
        let cleanup = tokio::spawn(sweep(
            self.state.pool.clone(),
            Arc::clone(&self.state.settings),
        ));
        let settings = &self.state.settings;
        let limits = server::ServerLimits {
            max_connections: settings.max_connections,
            header_timeout: settings.header_timeout,
            drain_grace: settings.drain_grace,
            drain_timeout: settings.drain_timeout,
            draining: Arc::clone(&self.state.draining),
        };
        let served = server::serve(listener, self.router(), limits, shutdown).await;
        cleanup.abort();
        let App {
            state,
            audit_writer,
        } = self;
        drop(state);
        audit_writer
            .shutdown(std::time::Duration::from_secs(10))
            .await;
        served
    }
}

async fn sweep(pool: PgPool, settings: Arc<Settings>) {
    let period = std::time::Duration::try_from(settings.cleanup_interval)
        .unwrap_or(std::time::Duration::from_secs(300));
    let mut ticker = tokio::time::interval(period);
    loop {
        ticker.tick().await;
        match store::delete_ended(&pool, settings.session_tombstone).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "swept ended sessions"),
            Err(err) => tracing::warn!(error = %err, "session sweep failed; will retry"),
        }
        if let Err(err) = auth::throttle::sweep(&pool).await {
            tracing::warn!(error = %err, "throttle sweep failed; will retry");
        }
        if let Err(err) = auth::passkey::ceremony::sweep(&pool).await {
            tracing::warn!(error = %err, "passkey challenge sweep failed; will retry");
        }
        if let Err(err) = accounts::email::sweep(&pool).await {
            tracing::warn!(error = %err, "e-mail verification sweep failed; will retry");
        }
        if let Err(err) = accounts::recovery::sweep(&pool).await {
            tracing::warn!(error = %err, "password reset throttle sweep failed; will retry");
        }
        if let Err(err) = accounts::links::sweep(&pool).await {
            tracing::warn!(error = %err, "password link sweep failed; will retry");
        }
        let retention = audit::Retention {
            age: settings.audit_retention,
            max_events: settings.audit_max_events,
        };
        match audit::prune(&pool, retention).await {
            Ok(pruned) if pruned.total() == 0 => {}
            Ok(pruned) => tracing::info!(
                old_events = pruned.old_events,
                excess_events = pruned.excess_events,
                old_counts = pruned.old_counts,
                "pruned the audit trail"
            ),
            Err(err) => tracing::warn!(error = %err, "audit pruning failed; will retry"),
        }
    }
}
