//! `portcullis config check`: the effective configuration, secrets masked, and warnings
//! about combinations that are unsafe in production.

use std::{fmt::Write as _, str::FromStr};

use sqlx::{ConnectOptions, Connection, postgres::PgConnectOptions};

use crate::{
    auth::policy::RECOMMENDED_MIN,
    config::{ServeArgs, Settings},
    db::Cluster,
};

/// `postgres://user:secret@host/db` with the password replaced, wherever it is given:
/// in the user info or as a `password` query parameter.
fn mask_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "(unparsable URL)".into();
    };
    if parsed.password().is_some() {
        // Fails only for URLs that cannot have a password, which then has none to hide.
        let _ = parsed.set_password(Some("****"));
    }
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(key, value)| {
            let value = if key.eq_ignore_ascii_case("password") {
                "****".to_owned()
            } else {
                value.into_owned()
            };
            (key.into_owned(), value)
        })
        .collect();
    if parsed
        .query_pairs()
        .any(|(key, _)| key.eq_ignore_ascii_case("password"))
    {
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.into()
}

/// A server setting as `SHOW` reports it; `None` if it cannot be read.
async fn show(conn: &mut sqlx::PgConnection, setting: &'static str) -> Option<String> {
    sqlx::query_scalar(&format!("SHOW {setting}"))
        .fetch_one(conn)
        .await
        .ok()
}

pub struct Report {
    pub text: String,
    pub warnings: Vec<String>,
}

/// Checks `args` (and, when it can, the database's `fsync`); never starts a cluster.
pub async fn check(args: &ServeArgs) -> anyhow::Result<Report> {
    let settings = Settings::from_args(args)?;
    let mut warnings = Vec::new();
    let public_bind = !args.bind.ip().is_loopback();
    if !settings.secure_cookies && public_bind {
        warnings.push(format!(
            "--secure-cookies is off while listening on {} (not loopback): serve over HTTPS \
             and turn it on, or bind to loopback behind a TLS proxy",
            args.bind
        ));
    }
    if !settings.secure_cookies && !settings.trusted_proxies.is_empty() {
        warnings.push(
            "--secure-cookies is off while a --trusted-proxy is set: a proxy in front usually \
             terminates HTTPS, so cookies should be Secure"
                .into(),
        );
    }
    // Portcullis does not terminate TLS, so Secure cookies mean something in front does;
    // unless it is trusted, its address is every client's address.
    if settings.secure_cookies && settings.trusted_proxies.is_empty() {
        warnings.push(format!(
            "--secure-cookies is on without a --trusted-proxy: behind an HTTPS proxy every \
             client then has the proxy's address, so all share one sign-in throttle ({} failed \
             sign-ins from anyone in {} make everyone wait) and the audit trail names only the \
             proxy: add --trusted-proxy with the proxy's address (e.g. --trusted-proxy \
             127.0.0.1 for nginx on this host)",
            settings.throttle.ip_failures, settings.throttle.window
        ));
    }
    // Without it, only `localhost` and IP addresses are answered (DNS rebinding defence):
    // a site people reach by name, directly or through a proxy, would answer 421.
    if settings.public_url.is_none() && (public_bind || !settings.trusted_proxies.is_empty()) {
        warnings.push(
            "--public-url is not set while listening beyond loopback or behind a \
             --trusted-proxy: requests naming the site by a DNS name get 421 Misdirected \
             Request; set it to the address people open (e.g. https://login.example.com)"
                .into(),
        );
    }
    if settings
        .trusted_proxies
        .iter()
        .any(|net| net.prefix_len() == 0)
    {
        warnings.push(
            "--trusted-proxy includes a /0 range: every client may then choose its own address"
                .into(),
        );
    }
    if settings.password_min_length < RECOMMENDED_MIN {
        warnings.push(format!(
            "--password-min-length {} is below {RECOMMENDED_MIN}, the NIST SP 800-63B minimum \
             for passwords used as the only factor",
            settings.password_min_length
        ));
    }
    if let Some(mail) = &settings.mail {
        warnings.extend(mail.warnings(settings.public_url.is_some()));
    }
    if settings
        .metrics_token
        .as_deref()
        .is_some_and(|token| token.len() < 24)
    {
        warnings
            .push("--metrics-token is shorter than 24 characters: use a long random one".into());
    }

    let (data_dir, _) = crate::db::data_dir::resolve_data_dir(args.db.data_dir.as_deref());
    let (database, options) = match &args.db.database_url {
        Some(url) => (
            format!("DATABASE_URL {}", mask_url(url)),
            PgConnectOptions::from_str(url).ok(),
        ),
        None => match Cluster::find_running(&data_dir) {
            Some(cluster) => (
                format!(
                    "private cluster in {} (running)",
                    cluster.pgdata().display()
                ),
                Some(cluster.connect_options("postgres")),
            ),
            None => (
                format!(
                    "private cluster in {} (not running; started by `serve`)",
                    data_dir.display()
                ),
                None,
            ),
        },
    };
    if let Some(options) = options {
        match options.connect().await {
            Ok(mut conn) => {
                if show(&mut conn, "fsync").await.as_deref() == Some("off") {
                    warnings.push(
                        "the database runs with fsync=off: a crash can lose or corrupt data".into(),
                    );
                }
                // Through PgBouncer the app cannot set statement_timeout per connection
                // (see `Database::pool`); the role or database must carry it.
                if args.db.db_pgbouncer
                    && show(&mut conn, "statement_timeout").await.as_deref() == Some("0")
                {
                    warnings.push(
                        "--db-pgbouncer is on and the database role has no statement_timeout: \
                             set one (ALTER ROLE … SET statement_timeout = '5s'), since the app \
                             cannot set it through PgBouncer"
                            .into(),
                    );
                }
                conn.close().await.ok();
            }
            Err(err) => warnings.push(format!("cannot connect to the database: {err}")),
        }
    }

    let mut text = String::from("Effective configuration (secrets masked):\n");
    let mut line = |name: &str, value: String| {
        let _ = writeln!(text, "  {name:<24} {value}");
    };
    line("bind", args.bind.to_string());
    line(
        "public url",
        settings.public_url.as_ref().map_or_else(
            || "none (answers to localhost and IP addresses only)".into(),
            ToString::to_string,
        ),
    );
    line(
        "passkeys",
        format!(
            "relying party {}, pages at {}",
            settings.relying_party.id,
            settings.relying_party.origin.origin().ascii_serialization()
        ),
    );
    line(
        "one-time links",
        format!(
            "{}, work for {}",
            settings
                .site_url
                .join("/password/new")
                .map_or_else(|_| settings.site_url.to_string(), |url| url.to_string()),
            settings.link_lifetime
        ),
    );
    line(
        "mail",
        settings.mail.as_ref().map_or_else(
            || "off (no --smtp-url: no e-mail features)".into(),
            |mail| format!("{} from {}", mail.redacted_url(), mail.from),
        ),
    );
    line("database", database);
    line("pgbouncer mode", args.db.db_pgbouncer.to_string());
    line("migrate at start", (!args.no_migrate).to_string());
    line("secure cookies", settings.secure_cookies.to_string());
    line("idle timeout", settings.idle_timeout.to_string());
    line("absolute timeout", settings.absolute_timeout.to_string());
    line(
        "password min length",
        settings.password_min_length.to_string(),
    );
    line(
        "throttle",
        format!(
            "{} per account name, {} per address, per {}",
            settings.throttle.account_failures,
            settings.throttle.ip_failures,
            settings.throttle.window
        ),
    );
    line(
        "trusted proxies",
        if settings.trusted_proxies.is_empty() {
            "none".into()
        } else {
            settings
                .trusted_proxies
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        },
    );
    let sign_in =
        crate::config::sign_in_connections(args.db_pool_size, args.db_sign_in_connections);
    line(
        "db pool",
        format!(
            "{} connections ({}), acquire timeout {}, statement timeout {}",
            args.db_pool_size,
            if sign_in == 0 {
                "sign-ins share them".to_owned()
            } else {
                format!("{sign_in} of them for sign-ins")
            },
            args.db_acquire_timeout,
            args.db_statement_timeout
        ),
    );
    line(
        "hashing",
        format!(
            "{} argon2id worker(s), {} sign-ins in progress at a time",
            settings.hash_workers,
            settings.hash_workers * crate::auth::password::ADMITTED_PER_WORKER
        ),
    );
    line(
        "limits",
        format!(
            "{} connections, header timeout {:?}, request timeout {:?}",
            settings.max_connections, settings.header_timeout, settings.request_timeout
        ),
    );
    line(
        "shutdown",
        format!(
            "grace {:?}, then drain {:?}",
            settings.drain_grace, settings.drain_timeout
        ),
    );
    line(
        "metrics token",
        if settings.metrics_token.is_some() {
            "set (****)"
        } else {
            "unset (admins only)"
        }
        .into(),
    );
    line(
        "support contact",
        settings
            .support_contact
            .clone()
            .unwrap_or_else(|| "none".into()),
    );
    line("audit retention", settings.audit_retention.to_string());
    line("audit max events", settings.audit_max_events.to_string());
    line(
        "log format",
        format!("{:?}", args.log_format).to_lowercase(),
    );
    line("demo mode", settings.demo.to_string());
    if warnings.is_empty() {
        text.push_str("\nNo warnings.\n");
    } else {
        text.push_str("\nWarnings:\n");
        for warning in &warnings {
            let _ = writeln!(text, "  - {warning}");
        }
    }
    Ok(Report { text, warnings })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{check, mask_url};
    use crate::config::{Cli, ServeArgs};

    /// `serve`'s defaults with these cookie and proxy settings, and no database to reach
    /// (whatever DATABASE_URL the environment has).
    fn args(secure_cookies: bool, trusted_proxies: &[&str]) -> ServeArgs {
        let mut args = Cli::parse_from(["portcullis"]).serve;
        args.secure_cookies = secure_cookies;
        args.trusted_proxies = trusted_proxies
            .iter()
            .map(|net| net.parse().expect("a CIDR range"))
            .collect();
        args.db.database_url = None;
        args.db.data_dir = Some("/nonexistent/portcullis-config-check".into());
        args
    }

    #[tokio::test]
    async fn secure_cookies_without_a_trusted_proxy_warns_that_clients_share_one_throttle() {
        let report = check(&args(true, &[])).await.expect("check");
        let warning = report
            .warnings
            .iter()
            .find(|w| w.contains("--secure-cookies is on without a --trusted-proxy"))
            .unwrap_or_else(|| panic!("no warning:\n{}", report.text));
        assert!(
            warning.contains("sign-in throttle") && warning.contains("add --trusted-proxy"),
            "{warning}"
        );
        assert!(report.text.contains(warning.as_str()), "{}", report.text);

        for (secure_cookies, proxies) in [(true, &["127.0.0.1/32"][..]), (false, &[][..])] {
            let report = check(&args(secure_cookies, proxies)).await.expect("check");
            assert!(
                !report.text.contains("without a --trusted-proxy"),
                "secure cookies {secure_cookies}, proxies {proxies:?}:\n{}",
                report.text
            );
        }
    }

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            mask_url("postgres://app:s3cret@db.internal:5432/portcullis?sslmode=require"),
            "postgres://app:****@db.internal:5432/portcullis?sslmode=require"
        );
        assert_eq!(
            mask_url("postgres://app@db/portcullis?password=s3cret&sslmode=require"),
            "postgres://app@db/portcullis?password=****&sslmode=require"
        );
        assert_eq!(
            mask_url("postgres://app:p%40ss@db/portcullis"),
            "postgres://app:****@db/portcullis"
        );
    }
}
