//! Password hashing with argon2id on a small pool of dedicated threads.
//!
//! Why not `spawn_blocking` per hash: a login flood would then run as many 19 MiB hashes at
//! once as the blocking pool has threads (512), starving page serving of CPU and leaving
//! each thread's allocator arena holding its 19 MiB (measured: RSS 25 MB -> 2 GB, see
//! LESSONS.md). Here a fixed number of workers each own one reusable block buffer, and a
//! bounded queue in front of them turns overload into a quick "busy" answer.
//!
//! Sign-ins are admitted before any of their work starts ([`PasswordHasher::admit`]): a
//! fair (first come, first served) queue with a few sign-ins in progress per worker, so a
//! flood of sign-ins waits in line instead of holding database connections and
//! reservations while it waits for a worker, and a full line is answered "busy" before
//! the database is touched.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use argon2::{
    Algorithm, Argon2, Block, Params, Version,
    password_hash::{Output, ParamsString, PasswordHash, SaltString},
};
use rand::RngCore;
use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use unicode_normalization::UnicodeNormalization;

/// OWASP's first argon2id recommendation: m=19 MiB, t=2, p=1.
pub const DEFAULT_M_COST: u32 = 19 * 1024;
pub const DEFAULT_T_COST: u32 = 2;
pub const DEFAULT_P_COST: u32 = 1;
const OUTPUT_LEN: usize = 32;
const SALT_LEN: usize = 16;

/// Longest password accepted, in code points after NFKC normalization.
pub const MAX_PASSWORD_CHARS: usize = 128;
/// Anything longer than this in bytes is rejected before normalization or hashing.
pub const MAX_PASSWORD_BYTES: usize = 4 * MAX_PASSWORD_CHARS;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("the password hashing queue is full")]
    Busy,
    #[error("the password hashing workers have stopped")]
    Stopped,
    #[error("stored password hash is unusable: {0}")]
    BadStoredHash(String),
    #[error("argon2 failed: {0}")]
    Argon2(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    Match { needs_rehash: bool },
    Mismatch,
}

/// NIST SP 800-63B 5.1.1.2: apply NFKC so the same password typed on different devices
/// (composed or decomposed accents, full-width digits) hashes the same.
pub fn normalize(password: &str) -> String {
    password.nfkc().collect()
}

type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

#[derive(Clone)]
pub struct PasswordHasher {
    inner: Arc<Inner>,
}

/// Sign-ins in progress per hashing worker: one hashing while the next does its database
/// steps (throttle, lookup, session), so the workers never wait for the database.
pub const ADMITTED_PER_WORKER: usize = 2;
/// Sign-ins waiting for admission per worker before more are refused as busy: at ~45
/// hashes per second per worker, a full line is about a second and a half of work.
const WAITING_PER_WORKER: usize = 64;

struct Inner {
    queue: mpsc::SyncSender<Job>,
    workers: usize,
    admission: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    params: Params,
    /// Verified against when the user is unknown or disabled, so every sign-in attempt
    /// costs one full hash and timing reveals nothing about which usernames exist.
    dummy_hash: String,
    hashes: AtomicU64,
    hash_nanos: AtomicU64,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("params", &self.inner.params)
            .finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// Starts `workers` hashing threads (0 = one per core) with the default parameters.
    pub fn start(workers: usize) -> anyhow::Result<Self> {
        let params = Params::new(
            DEFAULT_M_COST,
            DEFAULT_T_COST,
            DEFAULT_P_COST,
            Some(OUTPUT_LEN),
        )
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        Self::start_with(params, workers)
    }

    pub fn start_with(params: Params, workers: usize) -> anyhow::Result<Self> {
        let workers = if workers == 0 {
            thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            workers
        };
        let (queue, jobs) = mpsc::sync_channel::<Job>(workers * 16);
        let jobs = Arc::new(Mutex::new(jobs));
        for n in 0..workers {
            let jobs = Arc::clone(&jobs);
            let block_count = params.block_count();
            thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || {
                    lower_priority();
                    let mut memory = vec![Block::default(); block_count];
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = match jobs.lock() {
                            Ok(jobs) => jobs.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(&mut memory),
                            Err(_) => return,
                        }
                    }
                })?;
        }
        let dummy_hash = hash_with(&params, "portcullis-dummy-password", &mut Vec::new())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                queue,
                workers,
                admission: Arc::new(Semaphore::new(workers * ADMITTED_PER_WORKER)),
                waiting: AtomicUsize::new(0),
                max_waiting: workers * WAITING_PER_WORKER,
                params,
                dummy_hash,
                hashes: AtomicU64::new(0),
                hash_nanos: AtomicU64::new(0),
            }),
        })
    }

    /// The number of hashing threads.
    pub fn workers(&self) -> usize {
        self.inner.workers
    }

    /// Waits for a sign-in's turn (first come, first served); `Busy` at once, before any
    /// other work, when the line is full. Hold the [`Admission`] until the sign-in is done.
    pub async fn admit(&self) -> Result<Admission, HashError> {
        if let Ok(permit) = Arc::clone(&self.inner.admission).try_acquire_owned() {
            return Ok(Admission { _permit: permit });
        }
        let waiting = Waiting::join(&self.inner).ok_or(HashError::Busy)?;
        let permit = Arc::clone(&self.inner.admission)
            .acquire_owned()
            .await
            .map_err(|_| HashError::Stopped)?;
        drop(waiting);
        Ok(Admission { _permit: permit })
    }

    /// Runs a hash on a worker and counts it in the hash statistics.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let inner = Arc::clone(&self.inner);
        let queued = Instant::now();
        self.submit(move |memory| {
            metrics::histogram!(crate::telemetry::metric::PASSWORD_HASH_WAIT)
                .record(queued.elapsed().as_secs_f64());
            let started = Instant::now();
            let result = work(memory);
            let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            inner.hashes.fetch_add(1, Ordering::Relaxed);
            metrics::histogram!(crate::telemetry::metric::PASSWORD_HASH).record(nanos as f64 / 1e9);
            inner.hash_nanos.fetch_add(nanos, Ordering::Relaxed);
            result
        })
        .await
    }

    /// Runs other CPU-heavy password work (the policy's guessability estimate, see
    /// `policy::check_on`) on the same workers: off the async threads, at most one job per
    /// core at a time, and a full queue is a quick `Busy` rather than a pile-up.
    pub async fn run_other<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        self.submit(move |_memory| work()).await
    }

    async fn submit<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let _ = reply.send(work(memory));
        });
        self.inner.queue.try_send(job).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => HashError::Busy,
            mpsc::TrySendError::Disconnected(_) => HashError::Stopped,
        })?;
        answer.await.map_err(|_| HashError::Stopped)
    }

    /// Hashes an already normalized password into a PHC string.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let params = self.inner.params.clone();
        self.run(move |memory| hash_with(&params, &password, memory))
            .await?
    }

    /// Verifies a normalized password against a stored PHC string. `None` verifies against
    /// the dummy hash and always reports a mismatch (unknown or disabled users).
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<Verification, HashError> {
        let is_dummy = stored.is_none();
        let stored = stored.unwrap_or_else(|| self.inner.dummy_hash.clone());
        let params = self.inner.params.clone();
        let verification = self
            .run(move |memory| verify_with(&params, &password, &stored, memory))
            .await??;
        Ok(if is_dummy {
            Verification::Mismatch
        } else {
            verification
        })
    }

    /// (hashes done, mean duration) since start, for logs and benchmarks.
    pub fn stats(&self) -> (u64, Duration) {
        let count = self.inner.hashes.load(Ordering::Relaxed);
        let nanos = self.inner.hash_nanos.load(Ordering::Relaxed);
        let mean = nanos.checked_div(count).unwrap_or(0);
        (count, Duration::from_nanos(mean))
    }
}

/// A sign-in's place in the pipeline (see [`PasswordHasher::admit`]); released on drop.
#[derive(Debug)]
pub struct Admission {
    _permit: OwnedSemaphorePermit,
}

/// One sign-in waiting for admission; leaves the count when dropped (admitted, or the
/// request went away).
struct Waiting<'a>(&'a Inner);

impl<'a> Waiting<'a> {
    fn join(inner: &'a Inner) -> Option<Waiting<'a>> {
        let before = inner.waiting.fetch_add(1, Ordering::AcqRel);
        let waiting = Waiting(inner);
        (before < inner.max_waiting).then_some(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Hashing threads yield the CPU to page serving: a sign-in flood keeps every worker busy,
/// and at the same priority they took half the cores from signed-in users' requests
/// (benchmark scenario 5: hot-path p99 several times worse under a flood). They run at nice
/// 10 under `SCHED_BATCH` (the scheduler treats them as the CPU-bound work they are and
/// does not let them preempt a page worker when they wake for the next hash); idle cores
/// they still use fully, so sign-in throughput without page load is unchanged.
///
/// Why 10 and not 19 (benches/ANALYSIS.md, "Autogroup"): with the kernel's autogroup off,
/// as docs/DEPLOY.md recommends where PostgreSQL shares the machine, a nice value weighs
/// against every other program. With two busy processes beside it, a nice-19 thread got
/// 0.3–0.5 sign-ins per second through (a full line of 64 then waits minutes), nice 10
/// 2.2–3.6, and the page p99 under the flood stayed under 2× its p99 alone in every round
/// (1.0–1.7×, twelve rounds). With autogroup on, the database backends' scheduling decides
/// the tail whatever these threads' priority. `SCHED_IDLE` lets a page flood or a busy
/// machine stop sign-ins outright. Best effort: failure only logs.
fn lower_priority() {
    const HASHING_NICE: libc::c_int = 10;
    let batch = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler reads the parameter we pass and has no other
    // preconditions; on Linux `pid = 0` names the calling thread. The nice value below is
    // kept by (and applies to) the batch policy.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &batch) } != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "could not make the hashing threads batch threads"
        );
    }
    // SAFETY: setpriority has no memory-safety preconditions. On Linux the nice value is
    // per thread, and `who = 0` names the calling thread.
    let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, HASHING_NICE) };
    if result != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "could not lower the hashing threads' priority"
        );
    }
}

fn argon2id(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn ensure_memory(memory: &mut Vec<Block>, params: &Params) {
    if memory.len() < params.block_count() {
        memory.resize(params.block_count(), Block::default());
    }
}

fn hash_with(
    params: &Params,
    password: &str,
    memory: &mut Vec<Block>,
) -> Result<String, HashError> {
    let mut salt = [0u8; SALT_LEN];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let salt_string =
        SaltString::encode_b64(&salt).map_err(|e| HashError::Argon2(e.to_string()))?;
    ensure_memory(memory, params);
    let mut out = [0u8; OUTPUT_LEN];
    argon2id(params)
        .hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, &mut memory[..])
        .map_err(|e| HashError::Argon2(e.to_string()))?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| HashError::Argon2(e.to_string()))?,
        salt: Some(salt_string.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| HashError::Argon2(e.to_string()))?),
    };
    Ok(hash.to_string())
}

fn verify_with(
    configured: &Params,
    password: &str,
    stored: &str,
    memory: &mut Vec<Block>,
) -> Result<Verification, HashError> {
    let bad = |e: &dyn std::fmt::Display| HashError::BadStoredHash(e.to_string());
    let parsed = PasswordHash::new(stored).map_err(|e| bad(&e))?;
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|e| bad(&e))?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(|e| bad(&e))?
        .unwrap_or_default();
    let params = Params::try_from(&parsed).map_err(|e| bad(&e))?;
    let expected = parsed.hash.ok_or_else(|| bad(&"no hash output"))?;
    let salt = parsed.salt.ok_or_else(|| bad(&"no salt"))?;
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes).map_err(|e| bad(&e))?;

    ensure_memory(memory, &params);
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params.clone())
        .hash_password_into_with_memory(password.as_bytes(), salt_bytes, &mut out, &mut memory[..])
        .map_err(|e| HashError::Argon2(e.to_string()))?;
    if !bool::from(out.as_slice().ct_eq(expected.as_bytes())) {
        return Ok(Verification::Mismatch);
    }
    // Weaker parameters than configured: the caller rehashes on this successful sign-in.
    let needs_rehash = algorithm != Algorithm::Argon2id
        || version != Version::V0x13
        || params.m_cost() < configured.m_cost()
        || params.t_cost() < configured.t_cost()
        || params.p_cost() < configured.p_cost()
        || expected.len() < OUTPUT_LEN;
    Ok(Verification::Match { needs_rehash })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Params {
        Params::new(64, 1, 1, Some(OUTPUT_LEN)).expect("valid")
    }

    /// The hashing threads run at nice 10 under `SCHED_BATCH` (see `lower_priority`), as
    /// the kernel reports them in /proc.
    #[tokio::test]
    async fn hashing_threads_are_low_priority_batch_threads() {
        let hasher = PasswordHasher::start_with(small(), 1).expect("start");
        hasher.hash("correct horse".into()).await.expect("hash");
        let mut seen = 0;
        for task in std::fs::read_dir("/proc/self/task")
            .expect("tasks")
            .flatten()
        {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if !comm.starts_with("argon2-") {
                continue;
            }
            // Other tests' hashers run in this process too: one may have exited since.
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            // Fields after the command's closing parenthesis, from field 3 (state) on.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().collect())
                .unwrap_or_default();
            assert_eq!(fields.get(16), Some(&"10"), "nice of {comm}");
            assert_eq!(
                fields.get(38),
                Some(&libc::SCHED_BATCH.to_string().as_str()),
                "policy of {comm}"
            );
            seen += 1;
        }
        assert!(seen > 0, "no hashing thread found");
    }

    #[tokio::test]
    async fn hash_then_verify() {
        let hasher = PasswordHasher::start_with(small(), 1).expect("start");
        let hash = hasher.hash("correct horse".into()).await.expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert_eq!(
            hasher
                .verify("correct horse".into(), Some(hash.clone()))
                .await
                .expect("verify"),
            Verification::Match {
                needs_rehash: false
            }
        );
        assert_eq!(
            hasher
                .verify("wrong horse".into(), Some(hash))
                .await
                .expect("verify"),
            Verification::Mismatch
        );
    }

    #[tokio::test]
    async fn hashes_made_by_the_argon2_crate_verify_and_weak_ones_ask_for_rehash() {
        use argon2::PasswordHasher as _;
        let weak = Params::new(32, 1, 1, None).expect("valid");
        let salt = SaltString::encode_b64(b"0123456789abcdef").expect("salt");
        let stored = argon2id(&weak)
            .hash_password(b"pw-from-elsewhere", &salt)
            .expect("hash")
            .to_string();
        let hasher = PasswordHasher::start_with(small(), 1).expect("start");
        assert_eq!(
            hasher
                .verify("pw-from-elsewhere".into(), Some(stored))
                .await
                .expect("verify"),
            Verification::Match { needs_rehash: true }
        );
    }

    #[tokio::test]
    async fn dummy_verification_never_matches() {
        let hasher = PasswordHasher::start_with(small(), 1).expect("start");
        let result = hasher
            .verify("portcullis-dummy-password".into(), None)
            .await;
        assert_eq!(result.expect("verify"), Verification::Mismatch);
    }

    #[tokio::test]
    async fn garbage_stored_hash_is_an_error_not_a_panic() {
        let hasher = PasswordHasher::start_with(small(), 1).expect("start");
        let result = hasher.verify("x".into(), Some("not a hash".into())).await;
        assert!(matches!(result, Err(HashError::BadStoredHash(_))));
    }

    #[tokio::test]
    async fn admission_is_first_come_first_served_and_a_full_line_is_busy() {
        let hasher = PasswordHasher::start_with(small(), 1).expect("start");
        let in_progress: Vec<Admission> = vec![
            hasher.admit().await.expect("first"),
            hasher.admit().await.expect("second"),
        ];
        let (admitted, mut order) = tokio::sync::mpsc::unbounded_channel();
        let mut waiters = Vec::new();
        for n in 0..WAITING_PER_WORKER {
            let (waiter, admitted) = (hasher.clone(), admitted.clone());
            waiters.push(tokio::spawn(async move {
                let admission = waiter.admit().await.expect("admitted in turn");
                let _ = admitted.send(n);
                drop(admission);
            }));
            // Each joins the line before the next is spawned, so the line's order is known.
            while hasher.inner.waiting.load(Ordering::Acquire) < n + 1 {
                tokio::task::yield_now().await;
            }
        }
        assert!(matches!(hasher.admit().await, Err(HashError::Busy)));
        drop(in_progress);
        for waiter in waiters {
            waiter.await.expect("waiter");
        }
        let mut seen = Vec::new();
        while let Ok(n) = order.try_recv() {
            seen.push(n);
        }
        assert_eq!(seen, (0..WAITING_PER_WORKER).collect::<Vec<_>>());
        assert_eq!(hasher.inner.waiting.load(Ordering::Acquire), 0);
    }

    #[test]
    fn normalization_is_nfkc() {
        assert_eq!(normalize("ﬁ１"), "fi1");
        assert_eq!(normalize("e\u{301}"), "\u{e9}");
    }
}
