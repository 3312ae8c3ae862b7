//! What a run measures (written as JSON, rendered as BENCHMARKS.md) and how long it takes.

use serde::{Deserialize, Serialize};

use crate::{db::DbDelta, load::LoadResult, proxy, scenarios::FloodRound};

/// Durations and sizes of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub mode: String,
    pub warmup_s: u64,
    pub page_s: u64,
    pub hot_s: u64,
    pub hot_rounds: usize,
    pub signin_s: u64,
    pub raw_hash_s: u64,
    /// The flood scenario's slices: in each round the page load runs `isolation_slices`
    /// times alone and as often under the flood, alternately, `isolation_s` seconds each,
    /// and each condition's latencies are pooled. Alternating means both conditions meet
    /// the same background (this machine is shared), not one a quiet and one a busy minute.
    pub isolation_s: u64,
    pub isolation_slices: usize,
    /// Flood rounds, each judged on its own.
    pub isolation_rounds: usize,
    /// Of which the last this many run with busy processes beside (`neighbours`).
    pub neighbour_rounds: usize,
    /// Busy processes (one core each) during those rounds.
    pub neighbours: u32,
    pub census_s: u64,
    pub soak_requests: u64,
    pub soak_max_s: u64,
    /// Idle timeout of the soak server: short, so sessions end and get swept meanwhile.
    pub soak_idle_s: u64,
    pub soak_sweep_s: u64,
    pub soak_churn_ms: u64,
    pub page_connections: u32,
    /// Sign-in throughput (scenario 4): enough to keep every hashing worker busy.
    pub login_connections: u32,
    /// The flood (scenario 5): many more concurrent sign-ins than hashing workers or
    /// database connections, as a credential-stuffing run would send.
    pub flood_connections: u32,
    pub census_connections: u32,
    /// Seconds and connections of each scenario counted under callgrind.
    #[serde(default)]
    pub callgrind_s: u64,
    #[serde(default)]
    pub callgrind_connections: u32,
    pub sessions: usize,
    /// Users whose sessions the page loads replay.
    pub users: usize,
    /// Other users, signed in by the sign-in scenarios (so the page users' session lists,
    /// which the account page shows, do not grow during a measurement).
    pub flood_users: usize,
    /// Accounts that never sign in during a run, in every server's database, with
    /// `resident_sessions` live sessions among them: the tables a deployment has, so
    /// each server's statements are planned as they would be there (`setup::populate`).
    #[serde(default)]
    pub residents: usize,
    #[serde(default)]
    pub resident_sessions: usize,
}

impl Plan {
    pub fn full() -> Plan {
        Plan {
            mode: "full".into(),
            warmup_s: 3,
            page_s: 6,
            hot_s: 8,
            // Five: single 8-s rounds on a 2-core VM swing by 0.1 to 0.2 of a ratio, and the
            // median of three moved with one bad round (benches/ANALYSIS.md).
            hot_rounds: 5,
            signin_s: 8,
            raw_hash_s: 5,
            isolation_s: 3,
            isolation_slices: 3,
            isolation_rounds: 4,
            neighbour_rounds: 1,
            neighbours: 2,
            census_s: 2,
            soak_requests: 1_000_000,
            soak_max_s: 300,
            // Longer than signing in the soak's 64 sessions takes on a busy machine (26 s
            // at load 13 with one hashing worker): at 20 s the first ones expired before
            // the load began, and a tenth of the soak's requests were redirects.
            soak_idle_s: 60,
            soak_sweep_s: 5,
            soak_churn_ms: 500,
            page_connections: 16,
            login_connections: 8,
            flood_connections: 32,
            census_connections: 4,
            callgrind_s: 10,
            callgrind_connections: 4,
            sessions: 64,
            users: 16,
            flood_users: 16,
            residents: 10_000,
            resident_sessions: 20_000,
        }
    }

    pub fn quick() -> Plan {
        Plan {
            mode: "quick".into(),
            warmup_s: 1,
            page_s: 2,
            hot_s: 3,
            hot_rounds: 1,
            signin_s: 3,
            raw_hash_s: 2,
            isolation_s: 2,
            isolation_slices: 1,
            isolation_rounds: 1,
            neighbour_rounds: 0,
            census_s: 1,
            callgrind_s: 3,
            soak_requests: 50_000,
            soak_max_s: 30,
            // Long enough that the sessions signed in before the soak starts (64, one at a
            // time) are still alive on a busy machine.
            soak_idle_s: 15,
            soak_sweep_s: 1,
            soak_churn_ms: 200,
            ..Plan::full()
        }
    }
}

/// One server under one scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    pub server: String,
    pub load: LoadResult,
    pub rss_before_kb: u64,
    pub rss_after_kb: u64,
    /// CPU time the server process used per completed request.
    pub server_cpu_us_per_request: f64,
    /// CPU time of the whole PostgreSQL cluster per completed request (its background
    /// processes included); only with the benchmark's private cluster.
    #[serde(default)]
    pub postgres_cpu_us_per_request: Option<f64>,
    pub db: DbDelta,
}

impl Measurement {
    pub fn per_request(&self, count: u64) -> f64 {
        if self.load.requests == 0 {
            return 0.0;
        }
        count as f64 / self.load.requests as f64
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignIn {
    /// argon2id verifications per second with one worker per core (the machine's rate).
    pub raw_hash_rate: f64,
    pub raw_hash_workers: usize,
    pub raw_hash_mean_ms: f64,
    /// Both measurements (before and after the sign-in runs); the higher is used.
    #[serde(default)]
    pub raw_hash_rates: Vec<f64>,
    /// The same with as many workers as Portcullis runs by default (`--hash-workers`).
    #[serde(default)]
    pub server_hash_rate: f64,
    #[serde(default)]
    pub server_hash_workers: usize,
    pub servers: Vec<Measurement>,
}

/// The flood scenario for one server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Isolation {
    pub server: String,
    pub rounds: Vec<FloodRound>,
    pub rss_after_kb: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SoakSample {
    pub t_s: f64,
    pub rss_kb: u64,
    pub session_rows: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Soak {
    pub load: LoadResult,
    pub rss_start_kb: u64,
    pub rss_end_kb: u64,
    pub session_rows_start: i64,
    pub session_rows_max: i64,
    pub session_rows_end: i64,
    pub sessions_created: u64,
    pub churn_failures: u64,
    pub samples: Vec<SoakSample>,
    pub flags: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Census {
    pub server: String,
    pub scenario: String,
    pub requests: u64,
    pub round_trips: proxy::Snapshot,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub os: String,
    pub kernel: String,
    pub rustc: String,
    /// `kernel.sched_autogroup_enabled` ("0"/"1"; empty where unknown or in older reports).
    /// With it on, every PostgreSQL backend is a scheduling group of its own (the
    /// postmaster's children each start a session), which dominates scenario 5's tail.
    #[serde(default)]
    pub autogroup: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PageBytes {
    pub server: String,
    pub account: usize,
    pub forbidden: usize,
    #[serde(default)]
    pub api_me: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub date: String,
    pub command: String,
    pub commit: String,
    pub machine: Machine,
    pub database: String,
    pub load_generator: String,
    pub plan: Plan,
    pub page_bytes: Vec<PageBytes>,
    /// Reports written before the anonymous scenario ran in rounds: one run per server
    /// (`--render` reads it as one round).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anonymous: Vec<Measurement>,
    /// Anonymous `GET /account`, in rounds like the hot path's.
    #[serde(default)]
    pub anonymous_rounds: Vec<Vec<Measurement>>,
    pub hot_rounds: Vec<Vec<Measurement>>,
    /// `GET /api/me` signed in, rounds like the hot path's.
    #[serde(default)]
    pub api_rounds: Vec<Vec<Measurement>>,
    pub forbidden: Vec<Measurement>,
    pub sign_in: SignIn,
    pub isolation: Vec<Isolation>,
    pub census: Vec<Census>,
    /// User-space instructions per request under callgrind (empty without valgrind).
    #[serde(default)]
    pub instructions: Vec<crate::instructions::InstructionCount>,
    pub soak: Soak,
    pub wall_s: f64,
    /// /proc/loadavg at the start and the end: how busy the shared machine was.
    #[serde(default)]
    pub load_average: Vec<String>,
    /// The cargo profile the servers and this driver were built with: `release`, or `dev`
    /// when CI only proves the harness works (`BENCH_PROFILE=dev`; figures meaningless).
    #[serde(default = "release")]
    pub build: String,
    /// Portcullis' hashing workers and sign-in connections in this run.
    #[serde(default)]
    pub portcullis_hash_workers: usize,
}

pub fn release() -> String {
    "release".into()
}
