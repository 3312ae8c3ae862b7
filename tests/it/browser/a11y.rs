//! Accessibility: axe-core (from npm, `tests/browser/`) injected into every page of
//! [`PAGES`], in the light and the dark colour scheme. Any `serious` or `critical`
//! violation fails; the others are listed (run with `--nocapture` to see them).

use std::fmt::Write as _;

use serde::Deserialize;
use serde_json::json;

use super::{
    harness::{Browser, Js, skip, turn},
    pages::{self, PAGES},
};

/// axe-core's standard rule sets: WCAG 2.0–2.2 A and AA, and best practices.
const TAGS: [&str; 7] = [
    "wcag2a",
    "wcag2aa",
    "wcag21a",
    "wcag21aa",
    "wcag22a",
    "wcag22aa",
    "best-practice",
];

fn axe_source() -> Option<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/browser/node_modules/axe-core/axe.min.js"
    );
    match std::fs::read_to_string(path) {
        Ok(source) => Some(source),
        Err(e) => {
            skip(&format!(
                "axe-core not installed ({path}: {e}); run `npm ci --prefix tests/browser`"
            ));
            None
        }
    }
}

#[derive(Debug, Deserialize)]
struct Violation {
    id: String,
    impact: Option<String>,
    help: String,
    nodes: Vec<Node>,
}

#[derive(Debug, Deserialize)]
struct Node {
    target: String,
    summary: String,
}

impl Violation {
    fn blocks(&self) -> bool {
        matches!(self.impact.as_deref(), Some("serious" | "critical"))
    }
}

/// Injects axe (WebDriver scripts run whatever the page's CSP says) and runs it.
async fn run_axe(browser: &Browser, source: &str) -> Vec<Violation> {
    let loaded = browser
        .client
        .execute(&format!("{source}\n;return typeof window.axe;"), vec![])
        .await
        .expect("inject axe-core");
    assert_eq!(loaded, json!("object"), "axe-core did not load");
    let result = browser
        .client
        .execute_async(
            r#"
            const done = arguments[arguments.length - 1];
            axe.run(document, {
                runOnly: { type: 'tag', values: arguments[0] },
                resultTypes: ['violations'],
            }).then(
                (r) => done({ violations: r.violations.map((v) => ({
                    id: v.id, impact: v.impact, help: v.help,
                    nodes: v.nodes.map((n) => ({
                        target: n.target.join(' '), summary: n.failureSummary || '',
                    })),
                })) }),
                (e) => done({ error: String(e) }),
            );
            "#,
            vec![json!(TAGS)],
        )
        .await
        .expect("run axe-core");
    if let Some(error) = result.get("error") {
        panic!("axe-core failed: {error}");
    }
    serde_json::from_value(result["violations"].clone()).expect("axe-core's violations")
}

/// The check is not vacuous: a planted unlabelled field and low-contrast text are
/// reported as serious, and the dark scheme really switches the page's colours.
async fn checker_sees_what_it_should(browser: &Browser, axe: &str) {
    browser.visit("/login").await;
    // The page's CSP refuses style attributes; setting a style through the CSSOM is allowed.
    browser
        .client
        .execute(
            "const main = document.querySelector('main'); \
             main.insertAdjacentHTML('beforeend', \
               '<input id=planted-field><p id=planted-text>faint</p>'); \
             document.getElementById('planted-text').style.color = '#bbb';",
            vec![],
        )
        .await
        .expect("plant violations");
    let found: Vec<String> = run_axe(browser, axe)
        .await
        .into_iter()
        .filter(Violation::blocks)
        .map(|v| v.id)
        .collect();
    for rule in ["label", "color-contrast"] {
        assert!(
            found.iter().any(|id| id == rule),
            "axe-core missed the planted {rule} violation: {found:?}"
        );
    }
    let background = "return getComputedStyle(document.body).backgroundColor;";
    browser.set_dark(false).await;
    let light = browser
        .client
        .execute(background, vec![])
        .await
        .expect("colour");
    browser.set_dark(true).await;
    let dark = browser
        .client
        .execute(background, vec![])
        .await
        .expect("colour");
    browser.set_dark(false).await;
    assert_ne!(light, dark, "prefers-color-scheme: dark changes nothing");
}

#[tokio::test]
async fn every_page_has_no_serious_accessibility_violations_light_and_dark() {
    let Some(turn) = turn().await else { return };
    let Some(axe) = axe_source() else { return };
    let app = pages::app().await;
    let browser = turn.browser(&app, Js::On).await;
    let mut signed_in = None;
    checker_sees_what_it_should(&browser, &axe).await;
    let mut report = String::new();
    let mut blocking = 0;
    for case in PAGES {
        pages::show(&browser, &mut signed_in, case).await;
        for dark in [false, true] {
            browser.set_dark(dark).await;
            let scheme = if dark { "dark" } else { "light" };
            let violations = run_axe(&browser, &axe).await;
            let _ = writeln!(
                report,
                "{:<22} {scheme:<5} {} violation(s)",
                case.name,
                violations.len()
            );
            for violation in &violations {
                if violation.blocks() {
                    blocking += 1;
                }
                let _ = writeln!(
                    report,
                    "    [{}] {}: {}",
                    violation.impact.as_deref().unwrap_or("?"),
                    violation.id,
                    violation.help
                );
                for node in violation.nodes.iter().take(5) {
                    let _ = writeln!(report, "        {} — {}", node.target, node.summary);
                }
            }
        }
        browser.set_dark(false).await;
    }
    browser.close().await;
    eprintln!("axe-core, {} pages × light/dark:\n{report}", PAGES.len());
    assert_eq!(
        blocking, 0,
        "serious or critical accessibility violations:\n{report}"
    );
}
