//! Prometheus metrics: one recorder per process (the `metrics` facade is global), rendered
//! by `GET /metrics`. Counters are bumped where things happen (sign-ins, denials,
//! throttling, hashing); gauges that need a query are refreshed at scrape time only.

use std::{
    sync::{OnceLock, PoisonError, RwLock},
    time::Duration,
};

use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Latency buckets: 1 ms to 10 s (request and hash timings).
const SECONDS_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Finer buckets for the stages of a request (100 µs to 5 s): a wait for a database
/// connection or a hashing worker is usually well under a millisecond, and the tail is
/// what the benchmark's flood scenario looks for.
const STAGE_BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Installs the recorder on first use. `None` if another recorder was installed first
/// (an embedding application's): then `/metrics` says metrics are unavailable.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let mut builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
                .ok()?;
            // Full-name matchers are consulted before suffix ones.
            for name in [
                metric::DB_ACQUIRE,
                metric::SIGN_IN_STAGE,
                metric::PASSWORD_HASH_WAIT,
            ] {
                builder = builder
                    .set_buckets_for_metric(Matcher::Full(name.into()), &STAGE_BUCKETS)
                    .ok()?;
            }
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
    /// How long a hash waited for a free worker.
    pub const PASSWORD_HASH_WAIT: &str = "portcullis_password_hash_wait_seconds";
    /// How long a request waited for a database connection (`pool="pages"`: the session
    /// lookup of every signed-in request).
    pub const DB_ACQUIRE: &str = "portcullis_db_acquire_seconds";
    /// The stages of a password sign-in (`admission`: waiting for a sign-in slot;
    /// `throttle`; `lookup`; `verify`: hashing, its wait included; `finish`: the session).
    pub const SIGN_IN_STAGE: &str = "portcullis_sign_in_stage_seconds";
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

/// A histogram handle looked up once: `metrics::histogram!` builds and hashes its key on
/// every call. Call only after [`handle`] has installed the recorder (`App::build` does),
/// or the cached handle records nowhere.
macro_rules! cached_histogram {
    ($name:expr $(, $label:literal => $value:literal)*) => {{
        static HANDLE: OnceLock<Histogram> = OnceLock::new();
        HANDLE.get_or_init(|| metrics::histogram!($name $(, $label => $value)*))
    }};
}

/// Counts a 401 or 403 by status and reason. The handles are kept: `metrics::counter!`
/// with an owned status label allocated, built and hashed a key on every refusal, a
/// measurable share of an anonymous redirect (benches/ANALYSIS.md). Bounded: the reasons
/// are string literals, a few dozen pairs at most.
pub fn count_denial(status: u16, reason: &'static str) {
    static HANDLES: RwLock<Vec<(u16, &'static str, Counter)>> = RwLock::new(Vec::new());
    let find = |handles: &[(u16, &'static str, Counter)]| {
        handles
            .iter()
            .find(|(s, r, _)| *s == status && *r == reason)
            .map(|(_, _, counter)| counter.clone())
    };
    let known = find(&HANDLES.read().unwrap_or_else(PoisonError::into_inner));
    let counter = known.unwrap_or_else(|| {
        let mut handles = HANDLES.write().unwrap_or_else(PoisonError::into_inner);
        find(&handles).unwrap_or_else(|| {
            let counter = metrics::counter!(
                metric::DENIALS, "status" => status.to_string(), "reason" => reason
            );
            handles.push((status, reason, counter.clone()));
            counter
        })
    });
    counter.increment(1);
}

/// Records how long a signed-in request waited for a connection of the page pool (the
/// session lookup's).
pub fn page_db_acquired(waited: Duration) {
    cached_histogram!(metric::DB_ACQUIRE, "pool" => "pages").record(waited.as_secs_f64());
}

/// A stage of a password sign-in, for [`sign_in_stage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInStage {
    Admission,
    Throttle,
    Lookup,
    Verify,
    Finish,
}

/// Records how long one stage of a sign-in took.
pub fn sign_in_stage(stage: SignInStage, took: Duration) {
    let histogram = match stage {
        SignInStage::Admission => cached_histogram!(metric::SIGN_IN_STAGE, "stage" => "admission"),
        SignInStage::Throttle => cached_histogram!(metric::SIGN_IN_STAGE, "stage" => "throttle"),
        SignInStage::Lookup => cached_histogram!(metric::SIGN_IN_STAGE, "stage" => "lookup"),
        SignInStage::Verify => cached_histogram!(metric::SIGN_IN_STAGE, "stage" => "verify"),
        SignInStage::Finish => cached_histogram!(metric::SIGN_IN_STAGE, "stage" => "finish"),
    };
    histogram.record(took.as_secs_f64());
}

/// Times the stages of a sign-in for the metrics: each `done` records the time since the
/// previous one (or the start).
pub struct SignInTimer(std::time::Instant);

impl SignInTimer {
    pub fn start() -> SignInTimer {
        SignInTimer(std::time::Instant::now())
    }

    pub fn done(&mut self, stage: SignInStage) {
        let now = std::time::Instant::now();
        sign_in_stage(stage, now - self.0);
        self.0 = now;
    }
}
