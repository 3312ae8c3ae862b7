//! The text log is `key=value` fields: a value a person typed must not be able to add
//! fields of its own (a forged `status=200 reason=ok` after a failed sign-in).

use std::time::{Duration, Instant};

use crate::{process::Server, support::*};

/// The `key=value` pairs of a text log line, values unquoted (`"a b"` → `a b`).
fn fields(line: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut chars = line.chars().peekable();
    while chars.peek().is_some() {
        let mut token = String::new();
        let mut value = None::<String>;
        while let Some(&c) = chars.peek() {
            if c == ' ' {
                break;
            }
            chars.next();
            match (&mut value, c) {
                (None, '=') => value = Some(String::new()),
                (None, _) => token.push(c),
                (Some(v), '"') if v.is_empty() => {
                    // A quoted value: up to the closing quote, with backslash escapes.
                    while let Some(c) = chars.next() {
                        match c {
                            '"' => break,
                            '\\' => {
                                if let Some(escaped) = chars.next() {
                                    v.push(escaped);
                                }
                            }
                            _ => v.push(c),
                        }
                    }
                }
                (Some(v), _) => v.push(c),
            }
        }
        chars.next();
        if let Some(value) = value {
            pairs.push((token, value));
        }
    }
    pairs
}

#[test]
fn the_test_reads_quoted_values() {
    assert_eq!(
        fields(r#"x a=1 b="two \"words\"" c=3"#),
        [
            ("a".into(), "1".into()),
            ("b".into(), r#"two "words""#.into()),
            ("c".into(), "3".into())
        ]
    );
}

/// A failed sign-in as `x status=200 reason=ok` logs one `status` (401), its real
/// `reason`, and the whole typed name as the one `username` value.
#[tokio::test]
async fn a_typed_username_cannot_forge_fields_in_the_text_log() {
    let (pool, db) = fresh_database().await;
    pool.close().await;
    let url = database_url(&db);
    let (server, log) = Server::start_with(&["--database-url", &url, "--log-format", "text"], &[]);
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let page = client
        .get(format!("{}/login", server.base))
        .send()
        .await
        .expect("GET /login")
        .text()
        .await
        .expect("body");
    let csrf = hidden_field(&page, "csrf").expect("csrf");
    let forged = "x status=200 reason=ok";
    let response = client
        .post(format!("{}/login", server.base))
        .form(&[
            ("username", forged),
            ("password", "not the password at all"),
            ("csrf", &csrf),
        ])
        .send()
        .await
        .expect("POST /login");
    assert_eq!(response.status(), reqwest::StatusCode::UNAUTHORIZED);
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let found = log
            .lock()
            .expect("lock")
            .iter()
            .find(|line| line.contains("sign-in failed"))
            .cloned();
        if let Some(line) = found {
            break line;
        }
        assert!(
            Instant::now() < deadline,
            "no sign-in failure logged:\n{}",
            log.lock().expect("lock").join("\n")
        );
        sleep(50).await;
    };
    server.stop();
    let pairs = fields(&line);
    let values = |key: &str| -> Vec<&str> {
        pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(values("status"), ["401"], "{line}");
    assert!(!values("reason").contains(&"ok"), "{line}");
    assert_eq!(values("username"), [forged], "{line}");
}
