//! Where passkeys work: the relying party, from `--public-url` or the bind address.

use std::net::SocketAddr;

/// The WebAuthn relying party: the id passkeys are bound to (a domain name) and the one
/// origin whose pages may use them. Both come from the address people open, so they match
/// what the browser sees: `--public-url`, or without it `http://localhost:PORT` of the bind
/// address (browsers treat `localhost` as a secure context; an IP address can never be a
/// relying party id, so `http://127.0.0.1:PORT` cannot use passkeys at all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelyingParty {
    pub id: String,
    pub origin: url::Url,
}

impl RelyingParty {
    /// From `--public-url`, or `http://localhost:PORT` of the bind address without it. An
    /// unusable public URL is an error saying why (start-up fails, rather than every
    /// passkey ceremony in the browser).
    pub fn new(public_url: Option<&url::Url>, bind: SocketAddr) -> Result<RelyingParty, String> {
        let Some(url) = public_url else {
            return Ok(RelyingParty::local(bind.port()));
        };
        let Some(id) = url.domain() else {
            return Err(format!(
                "--public-url {url}: passkeys (WebAuthn) need a domain name, and {} is an IP \
                 address, which browsers never accept as a relying party id. Use the DNS name \
                 people open, or leave --public-url unset on a machine of your own (passkeys \
                 then work at http://localhost:PORT)",
                url.host_str().unwrap_or_default()
            ));
        };
        let id = id.trim_end_matches('.').to_ascii_lowercase();
        let local = id == "localhost" || id.ends_with(".localhost");
        if url.scheme() != "https" && !local {
            return Err(format!(
                "--public-url {url}: passkeys (WebAuthn) work only on https:// sites (or \
                 http://localhost, which browsers treat as secure). Give the https:// address \
                 people open (TLS may end at a proxy in front)"
            ));
        }
        let origin = url::Url::parse(&url.origin().ascii_serialization())
            .map_err(|e| format!("--public-url {url}: {e}"))?;
        Ok(RelyingParty { id, origin })
    }

    /// `http://localhost:PORT`, relying party id `localhost`.
    pub fn local(port: u16) -> RelyingParty {
        let origin = url::Url::parse(&format!("http://localhost:{port}"))
            .unwrap_or_else(|_| unreachable!("a valid URL"));
        RelyingParty {
            id: "localhost".to_owned(),
            origin,
        }
    }
}
