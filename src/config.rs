//! Command line and environment: every knob in one place, validated at start.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::auth::Role;

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
    Serve(ServeArgs),
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
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user. The password is read from stdin (prompted without echo on a terminal).
    Create {
        username: String,
        #[arg(long, value_enum, default_value_t = Role::Member)]
        role: Role,
    },
    /// Change a user's role; it takes effect on the user's next request.
    SetRole { username: String, role: Role },
    /// Set a new password (read like `create`) and sign the user out everywhere.
    SetPassword { username: String },
    /// Disable a user: existing sessions stop working on their next request.
    Disable { username: String },
    /// Enable a disabled user.
    Enable { username: String },
    /// List users.
    List,
}

/// Which PostgreSQL to use. Shared by `serve` and the other subcommands so they always
/// agree on the database.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Use this PostgreSQL server instead of the private cluster.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    pub database_url: Option<String>,
    /// Directory of the private PostgreSQL cluster (used when DATABASE_URL is not set).
    #[arg(
        long,
        env = "PORTCULLIS_DATA_DIR",
        default_value = "data",
        global = true
    )]
    pub data_dir: PathBuf,
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
    /// Shortest password accepted.
    #[arg(long, env = "PORTCULLIS_PASSWORD_MIN_LENGTH", default_value_t = 8, value_parser = clap::value_parser!(u16).range(8..=64))]
    pub password_min_length: u16,
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
    /// Audit events older than this are deleted.
    #[arg(long, env = "PORTCULLIS_AUDIT_RETENTION", default_value = "90d", value_parser = parse_duration)]
    pub audit_retention: time::Duration,
    /// A reverse proxy whose X-Forwarded-For / X-Forwarded-Proto are believed (IP or CIDR;
    /// repeat the flag or separate with commas). None by default.
    #[arg(long = "trusted-proxy", env = "PORTCULLIS_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_net)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
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

/// Settings of the running web application, derived from [`ServeArgs`]. Tests build it
/// directly.
#[derive(Debug, Clone)]
pub struct Settings {
    pub idle_timeout: time::Duration,
    pub absolute_timeout: time::Duration,
    pub secure_cookies: bool,
    pub static_dir: PathBuf,
    pub password_min_length: usize,
    pub cleanup_interval: time::Duration,
    pub session_tombstone: time::Duration,
    /// `--support-contact`, trimmed; `None` when empty.
    pub support_contact: Option<String>,
    pub audit_retention: time::Duration,
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Settings {
    pub fn from_args(args: &ServeArgs) -> anyhow::Result<Self> {
        if args.absolute_timeout < args.idle_timeout {
            anyhow::bail!(
                "--absolute-timeout ({}) is shorter than --idle-timeout ({}); \
                 the idle timeout would never apply",
                args.absolute_timeout,
                args.idle_timeout
            );
        }
        Ok(Self {
            idle_timeout: args.idle_timeout,
            absolute_timeout: args.absolute_timeout,
            secure_cookies: args.secure_cookies,
            static_dir: args.static_dir.clone(),
            password_min_length: usize::from(args.password_min_length),
            cleanup_interval: args.cleanup_interval,
            session_tombstone: args.session_tombstone,
            support_contact: Some(args.support_contact.trim())
                .filter(|contact| !contact.is_empty())
                .map(str::to_owned),
            audit_retention: args.audit_retention,
            trusted_proxies: args.trusted_proxies.clone(),
        })
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
