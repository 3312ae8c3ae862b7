//! The command line: wires configuration to the library and runs it.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use portcullis::{
    App, cli,
    config::{Cli, Command, ConfigCommand, DatabaseArgs, LogFormat, ServeArgs, Settings},
    db::{self, Database},
    server::Stop,
};

/// mimalloc instead of the C library's allocator: a request allocates and frees a few
/// dozen small blocks (headers, extensions, the session row, the page). Measured with
/// callgrind (benches/ANALYSIS.md): about 10,000 fewer instructions on every request
/// (/account 207k -> 174k, /api/me 77k -> 67k, the anonymous redirect 46k -> 37k). The
/// cost: about 17 MB more resident memory at rest, reached in the first seconds of load
/// and flat after that (the soak's samples).
#[global_allocator]
static ALLOCATOR: MiMalloc = MiMalloc;

/// mimalloc as Rust's allocator, asking for alignment only where a block needs more than
/// mimalloc gives every block (a word). The `mimalloc` crate's allocator passes every
/// request to `mi_malloc_aligned`, and mimalloc 3 serves that from its fast path only up
/// to 1 KiB; a larger block (a request's boxed futures, hyper's buffers) went through an
/// over-allocating fallback and flagged its page as holding interior pointers, which
/// slowed its free as well (callgrind, benches/ANALYSIS.md). Hand-written because no crate
/// does this: it is what the `mimalloc` crate did before it changed to always align.
struct MiMalloc;

/// Every mimalloc block is aligned to a word: its size classes are whole words.
const WORD: usize = std::mem::size_of::<usize>();

/// Whether a plain mimalloc block of `size` bytes is aligned to `align` (see `WORD`).
fn word_alignment_will_do(align: usize, size: usize) -> bool {
    align <= WORD && align <= size
}

// SAFETY: mimalloc's functions are thread-safe and return null on failure, as
// `GlobalAlloc` requires; a block from `mi_malloc` of at least `align` bytes with
// `align <= WORD` is aligned to `align` (see `WORD`), and every other layout goes to the
// aligned functions. `mi_free` takes blocks from all of them.
unsafe impl std::alloc::GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        use libmimalloc_sys::{mi_malloc, mi_malloc_aligned};
        if word_alignment_will_do(layout.align(), layout.size()) {
            unsafe { mi_malloc(layout.size()).cast() }
        } else {
            unsafe { mi_malloc_aligned(layout.size(), layout.align()).cast() }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        use libmimalloc_sys::{mi_zalloc, mi_zalloc_aligned};
        if word_alignment_will_do(layout.align(), layout.size()) {
            unsafe { mi_zalloc(layout.size()).cast() }
        } else {
            unsafe { mi_zalloc_aligned(layout.size(), layout.align()).cast() }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: std::alloc::Layout) {
        unsafe { libmimalloc_sys::mi_free(ptr.cast()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        use libmimalloc_sys::{mi_realloc, mi_realloc_aligned};
        if word_alignment_will_do(layout.align(), new_size) {
            unsafe { mi_realloc(ptr.cast(), new_size).cast() }
        } else {
            unsafe { mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast() }
        }
    }
}

const SERVE_LOG: &str = "info,sqlx=warn,tower_sessions=error,tower_sessions_core=error";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(*args),
        Some(Command::User { db, action }) => {
            portcullis::logs::init(LogFormat::Text, "warn");
            with_database(&db, |pool| async move {
                // The CLI enforces the same minimum as a default server.
                let min = Settings::defaults().password_min_length;
                cli::run(&pool, action, min).await
            })
        }
        Some(Command::Config {
            action: ConfigCommand::Check(args),
        }) => config_check(&args),
        Some(Command::Migrate { db }) if db.db_pgbouncer => Err(anyhow::anyhow!(
            "migrations hold a session-level advisory lock, which PgBouncer's transaction \
             pooling cannot keep: run `portcullis migrate` with a DATABASE_URL that reaches \
             PostgreSQL directly, without --db-pgbouncer"
        )),
        Some(Command::Migrate { db }) => {
            portcullis::logs::init(LogFormat::Text, "info");
            with_database(&db, |_| async { Ok(()) })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            match db::pgbouncer_switch_missing(err.as_ref()) {
                Some(what_to_do) => eprintln!("portcullis: {what_to_do}"),
                None => eprintln!("portcullis: {err:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

fn config_check(args: &ServeArgs) -> anyhow::Result<()> {
    portcullis::logs::init(LogFormat::Text, "error");
    let report = runtime()?.block_on(portcullis::config_check::check(args))?;
    print!("{}", report.text);
    if !report.warnings.is_empty() {
        anyhow::bail!("{} warning(s)", report.warnings.len());
    }
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Opens the database (starting the private cluster if needed and stopping it after),
/// migrates, and runs `work`.
fn with_database<F, Fut>(args: &DatabaseArgs, work: F) -> anyhow::Result<()>
where
    F: FnOnce(sqlx::PgPool) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let database = Database::open(args)?;
    runtime()?.block_on(async {
        let result = async {
            database.ensure_created().await?;
            let pool = database
                .pool(db::PoolSettings::cli(args.db_pgbouncer))
                .await?;
            migrate_or_check(&pool, args.db_pgbouncer).await?;
            let result = work(pool.clone()).await;
            pool.close().await;
            result
        }
        .await;
        database.release().await;
        result
    })
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    portcullis::logs::init(args.log_format, SERVE_LOG);
    let settings = Settings::from_args(&args)?;
    if settings.password_min_length < portcullis::auth::policy::RECOMMENDED_MIN {
        tracing::warn!(
            min = settings.password_min_length,
            "--password-min-length is below {}, the NIST SP 800-63B minimum for passwords \
             used as the only factor",
            portcullis::auth::policy::RECOMMENDED_MIN
        );
    }
    let database = Database::open(&args.db)?;
    if let Some(cluster) = &database.cluster {
        tracing::info!(
            data = %cluster.pgdata().display(),
            joined = !cluster.is_owner(),
            "using the private PostgreSQL cluster"
        );
    }
    runtime()?.block_on(async {
        let result = run_server(&args, settings, &database).await;
        database.release().await;
        result
    })
}

async fn run_server(
    args: &ServeArgs,
    mut settings: Settings,
    database: &Database,
) -> anyhow::Result<()> {
    database.ensure_created().await?;
    // `--db-pool-size` is the instance's whole connection budget: the sign-in pool's
    // connections come out of it.
    let sign_in =
        portcullis::config::sign_in_connections(args.db_pool_size, args.db_sign_in_connections);
    let pool_settings = |size| db::PoolSettings {
        size,
        acquire_timeout: std_duration(args.db_acquire_timeout),
        statement_timeout: Some(std_duration(args.db_statement_timeout)),
        pgbouncer: args.db.db_pgbouncer,
    };
    let pool = database
        .pool(pool_settings(args.db_pool_size - sign_in))
        .await?;
    migrate_or_check(&pool, args.no_migrate || args.db.db_pgbouncer).await?;
    let pools = if sign_in == 0 {
        portcullis::Pools::shared(pool.clone())
    } else {
        portcullis::Pools {
            pages: pool.clone(),
            sign_in: database.pool(pool_settings(sign_in)).await?,
        }
    };
    let sign_in_pool = pools.sign_in.clone();
    let demo = settings.demo;
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("cannot listen on {}", args.bind))?;
    let address = listener.local_addr()?;
    settings.listening_on(address);
    let app = App::build(pools, settings).await?;
    // What a person on this machine types into the browser.
    let site = if address.ip().is_unspecified() {
        format!("http://127.0.0.1:{}", address.port())
    } else {
        format!("http://{address}")
    };
    if demo {
        let accounts = portcullis::demo::provision(&pool, &app.state.hasher).await?;
        eprintln!("\nDemo mode — try every 401/403 case at {site}/ with these accounts");
        eprintln!("(passwords are new on every start and shown only here):\n");
        for (name, role, password) in accounts {
            eprintln!("  {name:<8} {:<7} {password}", role.as_str());
        }
        eprintln!();
    } else if let Some(token) = portcullis::accounts::setup::issue_token(&pool).await? {
        tracing::warn!("no users yet: open the one-time setup link printed below");
        eprintln!(
            "\nNo users yet. Create the first administrator in the browser (one-time link):\n  \
             {site}/setup?token={token}\n\
             or on the command line (same --data-dir/DATABASE_URL):\n  \
             portcullis user create admin --role admin\n"
        );
    }
    let shutdown = shutdown_signal()?;
    tracing::info!("listening on http://{address}");
    app.serve(listener, shutdown).await?;
    tracing::info!("all requests finished; closing the database pool");
    pool.close().await;
    sign_in_pool.close().await;
    Ok(())
}

/// Applies pending migrations, or with `check_only` refuses an outdated schema. Through
/// PgBouncer (`--db-pgbouncer`) only the check runs: sqlx migrates under a session-level
/// advisory lock, and transaction pooling could take it on one server connection and
/// release it on another, leaving it held for good (blocking every later migration).
async fn migrate_or_check(pool: &sqlx::PgPool, check_only: bool) -> anyhow::Result<()> {
    if check_only {
        db::check_schema(pool).await
    } else {
        db::migrate(pool).await
    }
}

fn std_duration(duration: time::Duration) -> std::time::Duration {
    std::time::Duration::try_from(duration).unwrap_or(std::time::Duration::from_secs(1))
}

/// Ctrl-C or SIGTERM. The handlers are installed now, not when the future is first polled:
/// a SIGTERM arriving right after "listening on" must not kill the process outright.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = Stop>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(async move {
        let stop = tokio::select! {
            _ = interrupt.recv() => Stop::Interactive,
            _ = terminate.recv() => Stop::Graceful,
        };
        tracing::info!(?stop, "shutdown requested");
        stop
    })
}

#[cfg(test)]
mod tests {
    use std::alloc::{GlobalAlloc, Layout};

    use super::MiMalloc;

    /// A block of `layout` from `alloc` (zeroed or not), checked for its alignment and
    /// content, filled, then grown or shrunk to `new_size` and checked again, and freed.
    ///
    /// # Safety
    /// `layout` has a non-zero size, and so does `new_size`.
    unsafe fn round_trip(layout: Layout, zeroed: bool, new_size: usize) {
        let (size, align) = (layout.size(), layout.align());
        unsafe {
            let block = if zeroed {
                MiMalloc.alloc_zeroed(layout)
            } else {
                MiMalloc.alloc(layout)
            };
            assert!(!block.is_null());
            assert_eq!(block as usize % align, 0, "size {size}, align {align}");
            if zeroed {
                assert!((0..size).all(|i| *block.add(i) == 0), "{size}, {align}");
            }
            block.write_bytes(0xa5, size);
            let moved = MiMalloc.realloc(block, layout, new_size);
            assert!(!moved.is_null());
            assert_eq!(moved as usize % align, 0, "{size} -> {new_size}, {align}");
            assert!((0..size.min(new_size)).all(|i| *moved.add(i) == 0xa5));
            MiMalloc.dealloc(moved, Layout::from_size_align_unchecked(new_size, align));
        }
    }

    /// Every size and alignment comes back aligned and writable (and zero where asked),
    /// through `realloc` too: below and above the word size and mimalloc's small-block
    /// limit (1 KiB), with sizes that are not powers of two.
    #[test]
    fn blocks_are_aligned_as_asked_through_alloc_zeroed_and_realloc() {
        let sizes = [
            1, 3, 7, 8, 12, 24, 40, 100, 1000, 1024, 1025, 1500, 4096, 70_000,
        ];
        for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
            for size in sizes {
                let layout = Layout::from_size_align(size, align).expect("layout");
                for zeroed in [false, true] {
                    for new_size in [size * 3, size.div_ceil(2)] {
                        // SAFETY: both sizes are at least 1.
                        unsafe { round_trip(layout, zeroed, new_size) };
                    }
                }
            }
        }
    }
}
