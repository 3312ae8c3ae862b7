//! Portcullis: session sign-in with exact 401/403 semantics, backed by PostgreSQL.
//!
//! `App::build` assembles the web application from a database pool and settings;
//! `main.rs` only wires the command line to it.

pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod web;

use std::{future::Future, net::SocketAddr, sync::Arc};

use axum::Router;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::{
    auth::{csrf::CsrfKey, password::PasswordHasher, store},
    config::Settings,
    web::{AppState, Site},
};

pub struct App {
    pub state: AppState,
}

impl App {
    /// Builds the application on a migrated database.
    pub async fn build(pool: PgPool, settings: Settings) -> anyhow::Result<App> {
        let hasher = PasswordHasher::start(0)?;
        Self::build_with_hasher(pool, settings, hasher).await
    }

    pub async fn build_with_hasher(
        pool: PgPool,
        settings: Settings,
        hasher: PasswordHasher,
    ) -> anyhow::Result<App> {
        let csrf = CsrfKey::load_or_create(&pool).await?;
        let site = Arc::new(Site::new(&settings));
        Ok(App {
            state: AppState {
                pool,
                settings: Arc::new(settings),
                hasher,
                csrf,
                site,
            },
        })
    }

    pub fn router(&self) -> Router {
        web::router(self.state.clone())
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests. Expired
    /// sessions are swept in the background meanwhile.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let cleanup = tokio::spawn(sweep_sessions(
            self.state.pool.clone(),
            Arc::clone(&self.state.settings),
        ));
        let service = self
            .router()
            .into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(listener, service)
            .with_graceful_shutdown(shutdown)
            .await;
        cleanup.abort();
        served
    }
}

async fn sweep_sessions(pool: PgPool, settings: Arc<Settings>) {
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
    }
}
