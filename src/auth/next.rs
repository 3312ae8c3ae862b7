//! The `next=` target after sign-in: a local path or nothing (no open redirects).

/// Where sign-in sends people who came without a (safe) `next`.
pub const DEFAULT_NEXT: &str = "/account";
/// The longest `next=` target kept, in bytes (longer ones are dropped, not refused).
pub const MAX_LEN: usize = 2048;

/// Accepts `raw` only if it is a path on this site: starts with a single `/`, has no
/// scheme or authority (not even after percent-decoding, which some browsers and proxies
/// do), no backslashes (browsers treat `/\host` as `//host`) and no control characters.
pub fn safe_next(raw: &str) -> Option<String> {
    if raw.is_empty() || raw.len() > MAX_LEN {
        return None;
    }
    // Without a `%` there is nothing to decode (the common case: a page's own path).
    let decoded = if raw.contains('%') {
        Some(percent_decode_all(raw)?)
    } else {
        None
    };
    for candidate in std::iter::once(raw).chain(decoded.as_deref()) {
        if !candidate.starts_with('/')
            || candidate.starts_with("//")
            || candidate.contains('\\')
            || candidate
                .chars()
                .any(|c| c.is_control() || c.is_whitespace())
        {
            return None;
        }
    }
    // Sending someone back to the sign-in page (or out of it) after signing in loops.
    let path = raw.split(['?', '#']).next().unwrap_or(raw);
    if path == "/login" || path == "/logout" {
        return None;
    }
    Some(raw.to_owned())
}

/// Percent-decodes repeatedly until stable (double encoding is a classic bypass).
/// `None` when the result is not UTF-8 or decoding does not settle.
fn percent_decode_all(raw: &str) -> Option<String> {
    let mut current = raw.to_owned();
    for _ in 0..4 {
        let next = percent_decode(&current)?;
        if next == current {
            return Some(next);
        }
        current = next;
    }
    None
}

fn percent_decode(input: &str) -> Option<String> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(value) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(value);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_pass() {
        for ok in [
            "/reports",
            "/account?tab=sessions",
            "/a/b#frag",
            "/reports?x=https://a",
        ] {
            assert_eq!(safe_next(ok).as_deref(), Some(ok), "{ok}");
        }
    }

    #[test]
    fn anything_leaving_the_site_is_refused() {
        for bad in [
            "",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https://evil.example/",
            "http:evil.example",
            "javascript:alert(1)",
            "evil.example",
            "/%2F%2Fevil.example",
            "/%2f/evil.example",
            "%2F%2Fevil.example",
            "/%5Cevil.example",
            "/%252F%252Fevil.example",
            "/\tevil",
            "/%0d%0aSet-Cookie:x=1",
            " /reports",
            "/login",
            "/login?next=/x",
            "/logout",
        ] {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
        assert_eq!(safe_next(&format!("/{}", "a".repeat(3000))), None);
    }
}
