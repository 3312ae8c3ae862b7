//! Prometheus metrics: one recorder per process (the `metrics` facade is global), rendered
//! by `GET /metrics`. Counters are bumped where things happen (sign-ins, denials,
//! throttling, hashing); gauges that need a query are refreshed at scrape time only.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Latency buckets: 1 ms to 10 s (request and hash timings).
const SECONDS_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Installs the recorder on first use. `None` if another recorder was installed first
/// (an embedding application's): then `/metrics` says metrics are unavailable.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => {
                    // Histogram samples pile up in the recorder until upkeep folds them into
                    // buckets; without a scraper calling /metrics that would grow forever.
                    let upkeep = handle.clone();
                    let _ = std::thread::Builder::new()
                        .name("metrics-upkeep".into())
                        .spawn(move || {
                            loop {
                                std::thread::sleep(std::time::Duration::from_secs(5));
                                upkeep.run_upkeep();
                            }
                        });
                    Some(handle)
                }
                Err(err) => {
                    tracing::warn!(error = %err, "metrics recorder not installed");
                    None
                }
            }
        })
        .as_ref()
}

/// Every metric's name, in one place (what dashboards and alerts key on).
pub mod metric {
    pub const HTTP_REQUESTS: &str = "http_requests_total";
    pub const HTTP_DURATION: &str = "http_request_duration_seconds";
    /// 401/403 answers, by status and precise reason.
    pub const DENIALS: &str = "portcullis_denials_total";
    pub const SIGN_INS: &str = "portcullis_sign_ins_total";
    pub const THROTTLED: &str = "portcullis_throttled_total";
    pub const PASSWORD_HASH: &str = "portcullis_password_hash_seconds";
    pub const ACTIVE_SESSIONS: &str = "portcullis_active_sessions";
    pub const DB_POOL_CONNECTIONS: &str = "portcullis_db_pool_connections";
    pub const DB_POOL_MAX: &str = "portcullis_db_pool_max_connections";
    pub const AUDIT_QUEUE: &str = "portcullis_audit_queue_events";
    /// Audit events whose request waited for room in a full queue (back-pressure).
    pub const AUDIT_WAITS: &str = "portcullis_audit_waits_total";
    /// Audit events the database refused or could not take after retries (each logged).
    pub const AUDIT_LOST: &str = "portcullis_audit_lost_events_total";
    /// Mails handed to the SMTP server (`result`: `sent`, or why not: `smtp_rejected`,
    /// `smtp_timeout`, `smtp_unavailable`, `queue_full`, `bad_message`).
    pub const MAILS: &str = "portcullis_mails_total";
}
