//! "Chrome on macOS", "Firefox on Android", "curl": a session's stored user agent as people
//! recognise it, worked out when a page is drawn (the raw string stays in the database and
//! in the page's tooltip). The rules are woothee's; the names are ours.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock, PoisonError},
};

/// The browser and system a user agent names, in words; the agent's own product name when
/// woothee knows neither (`reqwest`, `python-requests`); "Unknown browser" when empty.
pub fn device_name(user_agent: &str) -> String {
    // woothee tries its rules one `contains` at a time: parsing the four user agents of an
    // account page was a tenth of that page's instructions (benches/ANALYSIS.md), for the
    // same few strings on every view. Names are kept per user agent, a bounded number of
    // them (sessions' user agents are clipped when stored); a full cache starts over.
    const CACHED: usize = 1024;
    static NAMES: OnceLock<Mutex<HashMap<Box<str>, Arc<str>>>> = OnceLock::new();
    let names = NAMES.get_or_init(Mutex::default);
    if let Some(name) = names
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(user_agent)
    {
        return name.to_string();
    }
    let name = parse_device_name(user_agent);
    let mut names = names.lock().unwrap_or_else(PoisonError::into_inner);
    if names.len() >= CACHED {
        names.clear();
    }
    names.insert(user_agent.into(), Arc::from(name.as_str()));
    name
}

fn parse_device_name(user_agent: &str) -> String {
    static PARSER: OnceLock<woothee::parser::Parser> = OnceLock::new();
    let parsed = PARSER
        .get_or_init(woothee::parser::Parser::new)
        .parse(user_agent);
    let (browser, system) = match &parsed {
        Some(found) => (browser_name(found), system_name(found.os)),
        None => (None, None),
    };
    match (browser, system) {
        (Some(browser), Some(system)) => format!("{browser} on {system}"),
        (Some(browser), None) => browser,
        (None, Some(system)) => format!("A browser on {system}"),
        (None, None) => product_name(user_agent).unwrap_or_else(|| "Unknown browser".into()),
    }
}

fn browser_name(found: &woothee::parser::WootheeResult<'_>) -> Option<String> {
    let name = match found.name {
        "UNKNOWN" | "" => return None,
        // Command-line tools: woothee names the tool in `version` ("curl", "wget").
        "HTTP Library" => return product_name(found.version).or(Some("An HTTP client".into())),
        "SamsungBrowser" => "Samsung Internet",
        "Internet Explorer" => "Internet Explorer",
        other => other,
    };
    Some(name.to_owned())
}

fn system_name(os: &str) -> Option<&'static str> {
    Some(match os {
        "Mac OSX" | "Mac OS Classic" => "macOS",
        "iPhone" => "iPhone",
        "iPad" => "iPad",
        "iPod" => "iPod",
        "Android" => "Android",
        "ChromeOS" => "ChromeOS",
        "Linux" => "Linux",
        "FreeBSD" => "FreeBSD",
        // "Windows 10" is also what Windows 11 sends: name the system, not the version.
        windows if windows.starts_with("Windows") => "Windows",
        _ => return None,
    })
}

/// The first product token (`curl/8.5.0` → `curl`), if it looks like a name.
fn product_name(user_agent: &str) -> Option<String> {
    let token = user_agent.split(['/', ' ']).next()?.trim();
    let plausible = !token.is_empty()
        && token.len() <= 40
        && token != "Mozilla"
        && token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    plausible.then(|| token.to_owned())
}

/// How a session signed in (`sessions.auth_method`), in words.
pub fn sign_in_method(method: Option<&str>) -> &'static str {
    match method {
        Some("password") => "Password",
        Some("password+totp") => "Password and authenticator code",
        Some("password+recovery") => "Password and recovery code",
        Some("password+passkey") => "Password and passkey",
        Some("passkey") => "Passkey",
        // Sessions from before the method was recorded, or a method this version does not
        // know (a newer instance during a rolling upgrade).
        _ => "Not recorded",
    }
}

#[cfg(test)]
mod tests {
    use super::{device_name, sign_in_method};

    #[test]
    fn current_browsers_read_as_people_name_them() {
        for (agent, expected) in [
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like \
                 Gecko) Chrome/131.0.0.0 Safari/537.36",
                "Chrome on macOS",
            ),
            (
                "Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0",
                "Firefox on Android",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1_1 like Mac OS X) AppleWebKit/605.1.15 \
                 (KHTML, like Gecko) Version/18.1.1 Mobile/15E148 Safari/604.1",
                "Safari on iPhone",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like \
                 Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
                "Edge on Windows",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 \
                 Firefox/133.0",
                "Firefox on Windows",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, \
                 like Gecko) Version/18.1 Safari/605.1.15",
                "Safari on macOS",
            ),
            (
                "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/131.0.0.0 Mobile Safari/537.36",
                "Chrome on Android",
            ),
            (
                "Mozilla/5.0 (iPad; CPU OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, \
                 like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
                "Chrome on iPad",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, \
                 like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
                "Samsung Internet on Android",
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
                "Firefox on Linux",
            ),
            (
                "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like \
                 Gecko) Chrome/131.0.0.0 Safari/537.36",
                "Chrome on ChromeOS",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like \
                 Gecko) Chrome/131.0.0.0 Safari/537.36 OPR/115.0.0.0",
                "Opera on Windows",
            ),
            ("curl/8.5.0", "curl"),
            ("Wget/1.21.4", "wget"),
            ("python-requests/2.32.3", "python-requests"),
            ("reqwest/0.12", "reqwest"),
            ("", "Unknown browser"),
            ("<script>alert(1)</script>", "Unknown browser"),
        ] {
            assert_eq!(device_name(agent), expected, "{agent}");
        }
    }

    #[test]
    fn sign_in_methods_read_as_words() {
        assert_eq!(sign_in_method(Some("password")), "Password");
        assert_eq!(
            sign_in_method(Some("password+totp")),
            "Password and authenticator code"
        );
        assert_eq!(sign_in_method(Some("passkey")), "Passkey");
        assert_eq!(sign_in_method(Some("magic")), "Not recorded");
        assert_eq!(sign_in_method(None), "Not recorded");
    }
}
