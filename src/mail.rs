//! Outgoing mail (`--smtp-url`): one bounded queue and one task that talks to the SMTP
//! server, so a slow or unreachable server never holds a request. Handlers queue a
//! [`Mail`] and answer at once; the task sends it (lettre, async, TLS by rustls, which is
//! already in the tree through sqlx) and logs the cause of any failure. People are never
//! shown SMTP errors: the page they get does not depend on the mail's fate.

use std::time::Duration;

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, header::ContentType},
};
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::{
    audit::{AuditEvent, AuditLog},
    telemetry::metric,
};

/// Mails waiting for the SMTP server at most. Past that, new mails are refused (logged and
/// audited as failed): memory stays bounded while the server is down.
const QUEUE: usize = 256;
/// One SMTP conversation (connect, TLS, send) gives up after this.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// `--smtp-url` and `--mail-from`, checked at start.
#[derive(Clone)]
pub struct MailSettings {
    /// The URL as given: it may hold the SMTP password, so it is never printed (see
    /// [`MailSettings::redacted_url`]).
    url: String,
    pub from: Mailbox,
}

impl std::fmt::Debug for MailSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailSettings")
            .field("url", &self.redacted_url())
            .field("from", &self.from.to_string())
            .finish()
    }
}

impl MailSettings {
    /// `None` without `--smtp-url`; an error saying what is wrong (never the password)
    /// when the URL or the sender is unusable, or the sender is missing.
    pub fn from_flags(
        url: Option<&str>,
        from: Option<&str>,
    ) -> Result<Option<MailSettings>, String> {
        let Some(url) = url.map(str::trim).filter(|url| !url.is_empty()) else {
            return Ok(None);
        };
        let parsed = url::Url::parse(url).map_err(|e| format!("--smtp-url: {e}"))?;
        let shown = redact(&parsed);
        if !matches!(parsed.scheme(), "smtp" | "smtps") || parsed.host_str().is_none() {
            return Err(format!(
                "--smtp-url {shown}: use smtp://host:port or smtps://host:port (e.g. \
                 smtp://127.0.0.1:25, smtps://user:password@mail.example.com:465)"
            ));
        }
        // lettre's own reading of the URL (TLS mode, credentials): what will be used.
        AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| format!("--smtp-url {shown}: {e}"))?;
        let Some(from) = from.map(str::trim).filter(|from| !from.is_empty()) else {
            return Err(format!(
                "--smtp-url {shown} needs --mail-from (the sender, e.g. \
                 \"Portcullis <login@example.com>\")"
            ));
        };
        let from: Mailbox = from
            .parse()
            .map_err(|e| format!("--mail-from {from:?} is not an e-mail address: {e}"))?;
        Ok(Some(MailSettings {
            url: url.to_owned(),
            from,
        }))
    }

    /// What `config check` warns about: mail that travels unencrypted beyond this
    /// machine, and links that point at `localhost` (no `--public-url`).
    pub fn warnings(&self, public_url: bool) -> Vec<String> {
        let mut warnings = Vec::new();
        if let Ok(url) = url::Url::parse(&self.url) {
            let tls = url.scheme() == "smtps"
                || url
                    .query_pairs()
                    .any(|(k, v)| k == "tls" && v == "required");
            let local = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
            if !tls && !local {
                warnings.push(format!(
                    "--smtp-url {} sends reset links (and any password in the URL) without \
                     required TLS: use smtps:// or add ?tls=required",
                    self.redacted_url()
                ));
            }
        }
        if !public_url {
            warnings.push(
                "--smtp-url is set without --public-url: links in mails point at \
                 http://localhost:PORT, which works only on this machine"
                    .into(),
            );
        }
        warnings
    }

    /// The URL with its password masked, for `config check` and logs.
    pub fn redacted_url(&self) -> String {
        url::Url::parse(&self.url).map_or_else(|_| "(unparsable)".into(), |url| redact(&url))
    }
}

fn redact(url: &url::Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("****"));
    }
    shown.to_string()
}

/// One plain-text mail, and what to record once the server took it or refused it.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: Mailbox,
    pub subject: String,
    pub text: String,
    /// Recorded when the SMTP server accepted the mail.
    pub on_sent: Option<AuditEvent>,
    /// Recorded (with the reason set) when it could not be sent.
    pub on_failed: Option<AuditEvent>,
}

/// Handle to the outgoing queue; cheap to clone.
#[derive(Clone, Debug)]
pub struct Mailer {
    queue: mpsc::Sender<Mail>,
    audit: AuditLog,
}

impl Mailer {
    /// Starts the sending task. Nothing is contacted yet: a server that is down at start
    /// only fails the mails sent while it is down.
    pub fn start(settings: &MailSettings, audit: AuditLog) -> anyhow::Result<Mailer> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&settings.url)
            .map_err(|e| anyhow::anyhow!("--smtp-url {}: {e}", settings.redacted_url()))?
            .timeout(Some(SMTP_TIMEOUT))
            .build();
        let (queue, mails) = mpsc::channel(QUEUE);
        tokio::spawn(deliver(
            transport,
            settings.from.clone(),
            mails,
            audit.clone(),
        ));
        tracing::info!(smtp = %settings.redacted_url(), "mail enabled");
        Ok(Mailer { queue, audit })
    }

    /// Queues `mail` without waiting. A full queue (the server has been failing or slow
    /// for a while) drops it, with a log line and its failure event.
    pub async fn send(&self, mail: Mail) {
        match self.queue.try_send(mail) {
            Ok(()) => {}
            Err(TrySendError::Full(mail) | TrySendError::Closed(mail)) => {
                tracing::error!(
                    to = %mail.to.email.domain(),
                    "mail queue full ({QUEUE} waiting): the SMTP server is not keeping up; \
                     mail dropped"
                );
                failed(&self.audit, mail, "queue_full").await;
            }
        }
    }
}

async fn failed(audit: &AuditLog, mail: Mail, reason: &'static str) {
    metrics::counter!(metric::MAILS, "result" => reason).increment(1);
    if let Some(event) = mail.on_failed {
        audit.record(event.reason(reason)).await;
    }
}

/// The sending task: one mail at a time (each has its own timeout), until every handle is
/// gone.
async fn deliver(
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    mut mails: mpsc::Receiver<Mail>,
    audit: AuditLog,
) {
    while let Some(mail) = mails.recv().await {
        let message = Message::builder()
            .from(from.clone())
            .to(mail.to.clone())
            .subject(mail.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(mail.text.clone());
        let message = match message {
            Ok(message) => message,
            Err(err) => {
                tracing::error!(error = %err, "mail not built");
                failed(&audit, mail, "bad_message").await;
                continue;
            }
        };
        match transport.send(message).await {
            Ok(_) => {
                // The domain only: addresses are personal data, and the audit event says
                // whose it was.
                tracing::info!(to = %mail.to.email.domain(), subject = %mail.subject, "mail sent");
                metrics::counter!(metric::MAILS, "result" => "sent").increment(1);
                if let Some(event) = mail.on_sent {
                    audit.record(event).await;
                }
            }
            Err(err) => {
                let reason = if err.is_permanent() {
                    "smtp_rejected"
                } else if err.is_timeout() {
                    "smtp_timeout"
                } else {
                    "smtp_unavailable"
                };
                tracing::warn!(
                    error = %err,
                    cause = ?std::error::Error::source(&err),
                    to = %mail.to.email.domain(),
                    reason,
                    "mail not sent"
                );
                failed(&audit, mail, reason).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_are_checked_and_never_shown_with_their_password() {
        assert!(MailSettings::from_flags(None, None).expect("off").is_none());
        let on = MailSettings::from_flags(
            Some("smtps://me:s3cret@mail.example.com:465"),
            Some("Portcullis <login@example.com>"),
        )
        .expect("valid")
        .expect("on");
        assert!(
            !on.redacted_url().contains("s3cret"),
            "{}",
            on.redacted_url()
        );
        assert!(!format!("{on:?}").contains("s3cret"));
        let no_from = MailSettings::from_flags(Some("smtp://u:s3cret@127.0.0.1:25"), None)
            .expect_err("needs a sender");
        assert!(
            no_from.contains("--mail-from") && !no_from.contains("s3cret"),
            "{no_from}"
        );
        let bad = MailSettings::from_flags(Some("http://u:s3cret@x"), Some("a@example.com"))
            .expect_err("not smtp");
        assert!(!bad.contains("s3cret"), "{bad}");
        let tls = MailSettings::from_flags(
            Some("smtp://u:s3cret@x:25?tls=sometimes"),
            Some("a@example.com"),
        )
        .expect_err("unknown tls mode");
        assert!(!tls.contains("s3cret"), "{tls}");
        assert!(MailSettings::from_flags(Some("smtp://x:25"), Some("not an address")).is_err());
    }
}
