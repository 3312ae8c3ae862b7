//! Command line and environment: every knob in one place, validated at start.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::auth::Role;

mod relying_party;
pub use relying_party::RelyingParty;

#[derive(Debug, Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Session sign-in with exact 401/403 semantics, backed by PostgreSQL.",
    long_about = "Session sign-in with exact 401/403 semantics, backed by PostgreSQL.\n\n\
        Without a subcommand, `portcullis` runs `serve`. Without DATABASE_URL it starts a \
        private PostgreSQL cluster in --data-dir from the installed server binaries.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the web server (the default).
    Serve(Box<ServeArgs>),
    /// Manage user accounts.
    User {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(subcommand)]
        action: UserCommand,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration of `serve` with these flags and environment
    /// (secrets masked) and warn about unsafe combinations; exits 1 if there is a warning.
    Check(Box<ServeArgs>),
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create the first administrator, with your own password (read from stdin, prompted
    /// without echo on a terminal). Only while there is no user: invite everyone else.
    Create {
        username: String,
        /// The first user is an administrator (the only role accepted).
        #[arg(long, value_enum, default_value_t = Role::Admin)]
        role: Role,
    },
    /// Create a user without a password and print their one-time link, where they choose
    /// it themselves.
    Invite {
        username: String,
        #[arg(long, value_enum, default_value_t = Role::Member)]
        role: Role,
        #[command(flatten)]
        link: LinkArgs,
    },
    /// Print a one-time link where the user chooses a new password (their older links stop
    /// working; using it signs them out everywhere).
    ResetLink {
        username: String,
        #[command(flatten)]
        link: LinkArgs,
    },
    /// Change a user's role; it takes effect on the user's next request.
    SetRole { username: String, role: Role },
    /// Disable a user: existing sessions stop working on their next request.
    Disable { username: String },
    /// Enable a disabled user.
    Enable { username: String },
    /// Lift every sign-in block on a user's name (after a guessing attack, say).
    Unlock { username: String },
    /// List users.
    List,
}

/// Where the one-time links printed by `user invite|reset-link` point, and how long they
/// work: the same flags and environment as `serve`.
#[derive(Debug, Clone, Args)]
pub struct LinkArgs {
    /// The site's address (see `serve --public-url`); without it, the bind address.
    #[arg(long, env = "PORTCULLIS_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<url::Url>,
    /// The address `serve` listens on (links use `localhost` for a loopback one).
    #[arg(long, env = "PORTCULLIS_BIND", default_value = "127.0.0.1:3000")]
    pub bind: SocketAddr,
    /// How long the link works (e.g. 24h, 3d).
    #[arg(long, env = "PORTCULLIS_LINK_LIFETIME", default_value = "24h", value_parser = parse_duration)]
    pub link_lifetime: time::Duration,
}

/// Which PostgreSQL to use. Shared by `serve` and the other subcommands so they always
/// agree on the database.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Use this PostgreSQL server instead of the private cluster.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    pub database_url: Option<String>,
    /// Directory of the private PostgreSQL cluster (used when DATABASE_URL is not set).
    /// Default: `./data`; when running as root and the `postgres` user cannot reach it (a
    /// checkout in root's 0700 home), `/var/lib/portcullis` instead (said in the log).
    #[arg(long, env = "PORTCULLIS_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// DATABASE_URL points at PgBouncer in transaction pooling mode: no statement cache
    /// (each statement is prepared within the transaction that runs it: one more round
    /// trip per query), no startup options, and no migrations (only a schema check; run
    /// `portcullis migrate` directly against PostgreSQL).
    #[arg(long, env = "PORTCULLIS_DB_PGBOUNCER", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", global = true)]
    pub db_pgbouncer: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Address to listen on.
    #[arg(long, env = "PORTCULLIS_BIND", default_value = "127.0.0.1:3000")]
    pub bind: SocketAddr,
    /// A session ends after this long without a request (e.g. 30m, 90s).
    #[arg(long, env = "PORTCULLIS_IDLE_TIMEOUT", default_value = "30m", value_parser = parse_duration)]
    pub idle_timeout: time::Duration,
    /// A session ends this long after sign-in, however active (e.g. 12h).
    #[arg(long, env = "PORTCULLIS_ABSOLUTE_TIMEOUT", default_value = "12h", value_parser = parse_duration)]
    pub absolute_timeout: time::Duration,
    /// Sensitive changes (admin actions, signing out other sessions) need a sign-in or a
    /// re-authentication at most this long ago (e.g. 10m).
    #[arg(long, env = "PORTCULLIS_REAUTH_WINDOW", default_value = "10m", value_parser = parse_duration)]
    pub reauth_window: time::Duration,
    /// "Keep me signed in" on the sign-in form: a session that survives closing the browser,
    /// with no idle limit, for this many days (0, the default, hides the box). An
    /// administrator's session still ends at --absolute-timeout.
    #[arg(long, env = "PORTCULLIS_REMEMBER_DAYS", default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=400))]
    pub remember_days: u16,
    /// At most this many live sessions per person: a sign-in beyond it signs out their
    /// oldest session, whose holder is told why. Unset: no limit.
    #[arg(long, env = "PORTCULLIS_MAX_SESSIONS", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_sessions: Option<u32>,
    /// Who must turn on two-step verification before reaching protected pages (admins:
    /// administrators are sent to enrolment before any admin page).
    #[arg(long, env = "PORTCULLIS_REQUIRE_MFA", value_enum, default_value_t = RequireMfa::Admins)]
    pub require_mfa: RequireMfa,
    /// Mark cookies `Secure` and use the `__Host-` prefix. Turn on whenever the site is
    /// served over HTTPS (directly or behind a proxy).
    #[arg(long, env = "PORTCULLIS_SECURE_COOKIES", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub secure_cookies: bool,
    /// Directory holding the CSS and other static files.
    #[arg(long, env = "PORTCULLIS_STATIC_DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/static"))]
    pub static_dir: PathBuf,
    /// Log format.
    #[arg(long, env = "PORTCULLIS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Shortest password accepted, in characters. NIST SP 800-63B rev. 4 asks for 15 when
    /// the password is the only factor; lower values (down to 8) log a warning at start.
    #[arg(long, env = "PORTCULLIS_PASSWORD_MIN_LENGTH", default_value_t = 15, value_parser = clap::value_parser!(u16).range(8..=64))]
    pub password_min_length: u16,
    /// Password hashing threads (argon2id, about 20 ms and 19 MiB each). Default: half the
    /// cores (at least one), so a sign-in flood always leaves the other half to pages and
    /// the database; 0 means one per core.
    #[arg(long, env = "PORTCULLIS_HASH_WORKERS", value_parser = clap::value_parser!(u16).range(0..=1024))]
    pub hash_workers: Option<u16>,
    /// Failed sign-ins per account name within the throttle window before each further
    /// attempt must wait (1 minute, doubling up to the window).
    #[arg(long, env = "PORTCULLIS_THROTTLE_ACCOUNT_FAILURES", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub throttle_account_failures: u32,
    /// Failed sign-ins per client address within the throttle window before the address
    /// must wait for the window to end.
    #[arg(long, env = "PORTCULLIS_THROTTLE_IP_FAILURES", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub throttle_ip_failures: u32,
    /// The throttle window.
    #[arg(long, env = "PORTCULLIS_THROTTLE_WINDOW", default_value = "15m", value_parser = parse_duration)]
    pub throttle_window: time::Duration,
    /// Connections served at once; more wait in the kernel's accept queue.
    #[arg(long, env = "PORTCULLIS_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// A client must send its request headers within this time (slow-loris defence; also
    /// how long an idle keep-alive connection stays open). Checked four times a second.
    #[arg(long, env = "PORTCULLIS_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: time::Duration,
    /// A request must be answered within this time, else 408.
    #[arg(long, env = "PORTCULLIS_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: time::Duration,
    /// On SIGTERM, how long to keep serving while `/readyz` answers 503 and every response
    /// closes its connection, so load balancers move on before connections are refused.
    #[arg(long, env = "PORTCULLIS_DRAIN_GRACE", default_value = "5s", value_parser = parse_duration_or_zero)]
    pub drain_grace: time::Duration,
    /// On SIGTERM, after the grace period, how long in-flight requests get to finish.
    #[arg(long, env = "PORTCULLIS_DRAIN_TIMEOUT", default_value = "25s", value_parser = parse_duration)]
    pub drain_timeout: time::Duration,
    /// Database connections in this instance's pool.
    #[arg(long, env = "PORTCULLIS_DB_POOL_SIZE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_pool_size: u32,
    /// Of `--db-pool-size`, connections kept for sign-ins, sign-outs and session writes,
    /// so a sign-in flood never takes the connections pages read with (and page load never
    /// starves sign-ins). Default: a fifth of the pool, 1 to 4; 0: they share one pool.
    #[arg(long, env = "PORTCULLIS_DB_SIGN_IN_CONNECTIONS", value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub db_sign_in_connections: Option<u32>,
    /// How long a request waits for a database connection before it gets a 503.
    #[arg(long, env = "PORTCULLIS_DB_ACQUIRE_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    pub db_acquire_timeout: time::Duration,
    /// PostgreSQL statement_timeout for the app's connections.
    #[arg(long, env = "PORTCULLIS_DB_STATEMENT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub db_statement_timeout: time::Duration,
    /// Bearer token that may read /metrics (besides a signed-in admin). Unset: admins only.
    #[arg(long, env = "PORTCULLIS_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// How often expired sessions are swept from the database.
    #[arg(long, env = "PORTCULLIS_CLEANUP_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub cleanup_interval: time::Duration,
    /// How long an ended session is kept so its holder is told it expired or was revoked
    /// (rather than "please sign in").
    #[arg(long, env = "PORTCULLIS_SESSION_TOMBSTONE", default_value = "7d", value_parser = parse_duration)]
    pub session_tombstone: time::Duration,
    /// Who people should contact about access, shown on the 403 page and the sign-in
    /// notices: an e-mail address, an http(s) URL (both become links) or plain text.
    /// Empty: the pages say "your administrator".
    #[arg(long, env = "PORTCULLIS_SUPPORT_CONTACT", default_value = "")]
    pub support_contact: String,
    /// Do not apply migrations at start; refuse to start if the schema is older than this
    /// build needs (run `portcullis migrate` first). For deploy pipelines and PgBouncer.
    #[arg(long, env = "PORTCULLIS_NO_MIGRATE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub no_migrate: bool,
    /// Try Portcullis on this machine: creates (or resets) the accounts `member`, `editor`
    /// and `admin` with random passwords printed once, and marks every page as a demo.
    /// Refused together with a non-loopback --bind or --secure-cookies, and on a database
    /// with accounts that demo mode did not create (it marks the empty database it sets up).
    #[arg(long, env = "PORTCULLIS_DEMO", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub demo: bool,
    /// Audit events older than this are deleted.
    #[arg(long, env = "PORTCULLIS_AUDIT_RETENTION", default_value = "90d", value_parser = parse_duration)]
    pub audit_retention: time::Duration,
    /// At most this many audit events are kept; the oldest beyond it are deleted by the
    /// sweeper (every --cleanup-interval). Refusals of anonymous requests are counted, not
    /// stored as events, so this bounds what known people and administrators generate.
    #[arg(long, env = "PORTCULLIS_AUDIT_MAX_EVENTS", default_value_t = 5_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub audit_max_events: u64,
    /// The address people open the site at, e.g. `https://login.example.com`. Requests
    /// naming another host (other than `localhost` or an IP address) get 421: a page
    /// whose DNS name is re-pointed at this server (DNS rebinding) cannot use it. Needed
    /// whenever the site is reached by a DNS name, e.g. behind a proxy.
    #[arg(long, env = "PORTCULLIS_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<url::Url>,
    /// How long a one-time link (an invitation, a password reset) works after it is issued.
    #[arg(long, env = "PORTCULLIS_LINK_LIFETIME", default_value = "24h", value_parser = parse_duration)]
    pub link_lifetime: time::Duration,
    /// A reverse proxy whose X-Forwarded-For / X-Forwarded-Proto are believed (IP or CIDR;
    /// repeat the flag or separate with commas). None by default.
    #[arg(long = "trusted-proxy", env = "PORTCULLIS_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_net)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Send mail (address verification, "Forgot your password?", links) through this SMTP
    /// server: `smtp://host:25` (plain), `smtp://host:587?tls=required` (STARTTLS),
    /// `smtps://user:pass@host:465`. Unset: no e-mail features anywhere.
    #[arg(long, env = "PORTCULLIS_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// The sender of those mails, e.g. `Portcullis <login@example.com>`; needed with
    /// --smtp-url.
    #[arg(long, env = "PORTCULLIS_MAIL_FROM")]
    pub mail_from: Option<String>,
}

fn parse_duration_or_zero(value: &str) -> Result<time::Duration, String> {
    if value.trim() == "0" {
        return Ok(time::Duration::ZERO);
    }
    parse_duration(value)
}

/// An `http(s)` URL of a host, with nothing after it but an optional `/`.
fn parse_public_url(value: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(value.trim()).map_err(|e| format!("{value:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "{value:?} is not an http(s) URL of a host (e.g. https://login.example.com)"
        ));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{value:?}: give the site's address without a path (Portcullis serves from /)"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{value:?}: no user or password in the URL"));
    }
    Ok(url)
}

fn parse_net(value: &str) -> Result<ipnet::IpNet, String> {
    let value = value.trim();
    if let Ok(net) = value.parse::<ipnet::IpNet>() {
        return Ok(net);
    }
    value
        .parse::<std::net::IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| format!("{value:?} is not an IP address or CIDR range"))
}

/// The address links start with: `--public-url`, else the bind address, with `localhost`
/// for a loopback or unspecified one (passkeys need the name `localhost`, and browsers
/// cannot open 0.0.0.0).
pub fn site_url(public_url: Option<&url::Url>, bind: std::net::SocketAddr) -> url::Url {
    if let Some(url) = public_url {
        return url.clone();
    }
    let ip = bind.ip();
    let host = if ip.is_loopback() || ip.is_unspecified() {
        "localhost".to_owned()
    } else if ip.is_ipv6() {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    url::Url::parse(&format!("http://{host}:{}/", bind.port()))
        .unwrap_or_else(|_| unreachable!("an IP address and a port make a valid URL"))
}

/// Who must have two-step verification before reaching protected pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RequireMfa {
    None,
    Admins,
    All,
}

impl RequireMfa {
    /// Whether a user with `role` must have a second factor.
    pub fn covers(self, role: crate::auth::Role) -> bool {
        match self {
            RequireMfa::None => false,
            RequireMfa::Admins => role == crate::auth::Role::Admin,
            RequireMfa::All => true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

fn parse_duration(value: &str) -> Result<time::Duration, String> {
    let std = humantime::parse_duration(value).map_err(|e| e.to_string())?;
    let duration = time::Duration::try_from(std).map_err(|e| e.to_string())?;
    if duration <= time::Duration::ZERO {
        return Err("must be longer than zero".into());
    }
    Ok(duration)
}

/// `--hash-workers`: unset, half the cores (at least one); 0, one per core.
///
/// Hashing is the one thing a sign-in flood makes the server do at will. Measured on two
/// cores under 32 concurrent sign-ins beside the page load (benches/ANALYSIS.md): with a
/// worker per core, even at lowered priority, the page p99 spiked to tens of times its
/// level alone in some rounds; with one, a core is always free of hashing for page serving
/// and PostgreSQL, and the p99 stayed within 1.0-1.4x. The price: a single instance signs
/// in at most about half as many people per second as its cores could hash.
pub fn hash_workers(flag: Option<u16>) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    match flag {
        None => (cores / 2).max(1),
        Some(0) => cores,
        Some(n) => usize::from(n),
    }
}

/// `--db-sign-in-connections`: how many of `--db-pool-size` connections sign-ins get;
/// 0 when they share the page pool (also when the pool has a single connection).
pub fn sign_in_connections(pool_size: u32, flag: Option<u32>) -> u32 {
    let wanted = flag.unwrap_or((pool_size / 5).clamp(1, 4));
    if pool_size < 2 {
        return 0;
    }
    wanted.min(pool_size - 1)
}

/// How failed sign-ins are throttled (see `auth::throttle`).
#[derive(Debug, Clone, Copy)]
pub struct ThrottleSettings {
    pub account_failures: i32,
    pub ip_failures: i32,
    pub window: time::Duration,
}

fn std_duration(duration: time::Duration) -> std::time::Duration {
    std::time::Duration::try_from(duration).unwrap_or(std::time::Duration::from_secs(1))
}

/// Settings of the running web application, derived from [`ServeArgs`]. Tests build it
/// directly.
#[derive(Debug, Clone)]
pub struct Settings {
    pub idle_timeout: time::Duration,
    pub absolute_timeout: time::Duration,
    pub reauth_window: time::Duration,
    /// `--remember-days` as a duration; `None` when off.
    pub remember: Option<time::Duration>,
    /// `--max-sessions`: live sessions per person; `None`, no limit.
    pub max_sessions: Option<u32>,
    pub require_mfa: RequireMfa,
    pub secure_cookies: bool,
    pub static_dir: PathBuf,
    pub password_min_length: usize,
    /// Password hashing threads (`--hash-workers`, resolved: at least 1).
    pub hash_workers: usize,
    pub throttle: ThrottleSettings,
    pub max_connections: usize,
    pub header_timeout: std::time::Duration,
    pub request_timeout: std::time::Duration,
    pub drain_timeout: std::time::Duration,
    pub drain_grace: std::time::Duration,
    pub metrics_token: Option<String>,
    pub cleanup_interval: time::Duration,
    pub session_tombstone: time::Duration,
    /// `--support-contact`, trimmed; `None` when empty.
    pub support_contact: Option<String>,
    pub demo: bool,
    pub audit_retention: time::Duration,
    pub audit_max_events: u64,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `--public-url`: the site's own address (see `web::http::host`).
    pub public_url: Option<url::Url>,
    /// Whom passkeys are made for: from `--public-url`, else `http://localhost:PORT`.
    pub relying_party: RelyingParty,
    /// `--smtp-url` and `--mail-from`, checked (`crate::mail`); `None`: no e-mail at all.
    pub mail: Option<crate::mail::MailSettings>,
    /// `--link-lifetime`: how long one-time links work.
    pub link_lifetime: time::Duration,
    /// Where one-time links point: `--public-url`, else the bind address ([`site_url`]).
    pub site_url: url::Url,
}

impl Settings {
    pub fn from_args(args: &ServeArgs) -> anyhow::Result<Self> {
        if args.demo && (!args.bind.ip().is_loopback() || args.secure_cookies) {
            anyhow::bail!(
                "--demo is for trying Portcullis on this machine: its accounts' passwords are \
                 printed to the terminal. It refuses a --bind address other than loopback \
                 (127.0.0.1 or ::1) and --secure-cookies (a real, HTTPS deployment). Drop --demo \
                 and create the first administrator with `portcullis user create`, then invite \
                 others with `portcullis user invite`."
            );
        }
        if args.absolute_timeout < args.idle_timeout {
            anyhow::bail!(
                "--absolute-timeout ({}) is shorter than --idle-timeout ({}); \
                 the idle timeout would never apply",
                args.absolute_timeout,
                args.idle_timeout
            );
        }
        let relying_party = RelyingParty::new(args.public_url.as_ref(), args.bind)
            .map_err(|why| anyhow::anyhow!(why))?;
        let mail = crate::mail::MailSettings::from_flags(
            args.smtp_url.as_deref(),
            args.mail_from.as_deref(),
        )
        .map_err(|why| anyhow::anyhow!(why))?;
        Ok(Self {
            idle_timeout: args.idle_timeout,
            absolute_timeout: args.absolute_timeout,
            reauth_window: args.reauth_window,
            remember: (args.remember_days > 0)
                .then(|| time::Duration::days(i64::from(args.remember_days))),
            max_sessions: args.max_sessions,
            require_mfa: args.require_mfa,
            secure_cookies: args.secure_cookies,
            static_dir: args.static_dir.clone(),
            password_min_length: usize::from(args.password_min_length),
            hash_workers: hash_workers(args.hash_workers),
            throttle: ThrottleSettings {
                account_failures: i32::try_from(args.throttle_account_failures).unwrap_or(5),
                ip_failures: i32::try_from(args.throttle_ip_failures).unwrap_or(50),
                window: args.throttle_window,
            },
            max_connections: args.max_connections as usize,
            header_timeout: std_duration(args.header_timeout),
            request_timeout: std_duration(args.request_timeout),
            drain_timeout: std_duration(args.drain_timeout),
            drain_grace: std::time::Duration::try_from(args.drain_grace).unwrap_or_default(),
            metrics_token: args.metrics_token.clone().filter(|t| !t.is_empty()),
            cleanup_interval: args.cleanup_interval,
            session_tombstone: args.session_tombstone,
            support_contact: Some(args.support_contact.trim())
                .filter(|contact| !contact.is_empty())
                .map(str::to_owned),
            demo: args.demo,
            audit_retention: args.audit_retention,
            audit_max_events: args.audit_max_events,
            trusted_proxies: args.trusted_proxies.clone(),
            public_url: args.public_url.clone(),
            relying_party,
            mail,
            link_lifetime: args.link_lifetime,
            site_url: site_url(args.public_url.as_ref(), args.bind),
        })
    }

    /// Once the listener is bound: without `--public-url`, passkeys belong to
    /// `http://localhost:PORT` of the port actually bound (`--bind 127.0.0.1:0` picks one).
    pub fn listening_on(&mut self, address: SocketAddr) {
        if self.public_url.is_none() {
            self.relying_party = RelyingParty::local(address.port());
            self.site_url = site_url(None, address);
        }
    }

    /// The defaults of `serve`, with the static files of this checkout.
    pub fn defaults() -> Self {
        let cli = Cli::parse_from(["portcullis"]);
        Self::from_args(&cli.serve).expect("the default settings are consistent")
    }

    pub fn session_cookie_name(&self) -> &'static str {
        if self.secure_cookies {
            "__Host-portcullis_session"
        } else {
            "portcullis_session"
        }
    }

    /// The device cookie (`auth::device`): which accounts this browser has signed in to.
    pub fn device_cookie_name(&self) -> &'static str {
        if self.secure_cookies {
            "__Host-portcullis_device"
        } else {
            "portcullis_device"
        }
    }

    /// The state of a passkey ceremony (`auth::passkey::ceremony`): signed, single-use.
    pub fn passkey_cookie_name(&self) -> &'static str {
        if self.secure_cookies {
            "__Host-portcullis_passkey"
        } else {
            "portcullis_passkey"
        }
    }

    pub fn csrf_cookie_name(&self) -> &'static str {
        if self.secure_cookies {
            "__Host-portcullis_csrf"
        } else {
            "portcullis_csrf"
        }
    }

    /// How stale `last_seen_at` may get before a request refreshes it: a tenth of the idle
    /// window, capped at a minute. A session in use never idles out, yet an active user
    /// costs at most one write a minute (see README, "Sessions").
    pub fn refresh_after(&self) -> time::Duration {
        std::cmp::min(self.idle_timeout / 10, time::Duration::minutes(1))
    }
}

#[cfg(test)]
mod tests;
