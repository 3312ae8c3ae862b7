//! Accessibility: axe-core (from npm, `tests/browser/`) injected into every page of
//! [`PAGES`], in the light and the dark colour scheme at desktop width, and light at
//! phone width, where no page may be wider than the screen. Any `serious` or `critical`
//! violation fails; the others are listed (run with `--nocapture` to see them).

use std::fmt::Write as _;

use fantoccini::key::Key;
use portcullis::web::PROTECTED_PAGES;
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

/// axe-core's source, installed from npm (pinned by `tests/browser/package-lock.json`) the
/// first time it is needed, so `cargo test` needs no step of its own; skipped only where
/// npm is missing too. Installed once per test run (two tests may ask at once).
fn axe_source() -> Option<String> {
    static SOURCE: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
    let path = format!("{dir}/node_modules/axe-core/axe.min.js");
    let source = SOURCE.get_or_init(|| {
        if std::fs::metadata(&path).is_err() {
            let installed = std::process::Command::new("npm")
                .args([
                    "ci",
                    "--prefix",
                    dir,
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                ])
                .status();
            match installed {
                Ok(status) if status.success() => {}
                Ok(status) => {
                    return Err(format!("`npm ci --prefix tests/browser` failed: {status}"));
                }
                Err(e) => {
                    return Err(format!(
                        "npm is not available ({e}); install Node.js and npm"
                    ));
                }
            }
        }
        std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))
    });
    match source {
        Ok(source) => Some(source.clone()),
        Err(why) => {
            skip(&format!("axe-core not installed: {why}"));
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
    // Once per page: it stays while the emulated scheme or width changes.
    let present = browser
        .client
        .execute("return typeof window.axe;", vec![])
        .await
        .expect("look for axe-core");
    if present != json!("object") {
        let loaded = browser
            .client
            .execute(&format!("{source}\n;return typeof window.axe;"), vec![])
            .await
            .expect("inject axe-core");
        assert_eq!(loaded, json!("object"), "axe-core did not load");
    }
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
async fn every_page_has_no_serious_accessibility_violations() {
    let Some(turn) = turn().await else { return };
    let Some(axe) = axe_source() else { return };
    let site = pages::Site::new().await;
    let browser = turn.browser(&site.app, Js::On).await;
    let mut signed_in = None;
    checker_sees_what_it_should(&browser, &axe).await;
    let mut report = String::new();
    let mut blocking = 0;
    for case in PAGES {
        pages::show(&browser, &site, &mut signed_in, case).await;
        for (dark, phone) in [(false, false), (true, false), (false, true)] {
            browser.set_dark(dark).await;
            if phone {
                browser.set_viewport(360, 740, true).await;
            }
            let violations = run_axe(&browser, &axe).await;
            if phone {
                // Reflow (WCAG 1.4.10): at 360 px nothing widens the page; a table too
                // wide scrolls in its own box.
                let width = browser
                    .client
                    .execute(
                        "return [window.innerWidth, document.documentElement.scrollWidth];",
                        vec![],
                    )
                    .await
                    .expect("page width");
                if width != json!([360, 360]) {
                    blocking += 1;
                    let _ = writeln!(
                        report,
                        "{:<22} phone: the page is wider than the phone \
                         ([viewport, content] = {width}, want [360, 360])",
                        case.name
                    );
                }
            }
            browser.reset_viewport().await;
            let _ = writeln!(
                report,
                "{:<22} {:<5} {:<7} {} violation(s)",
                case.name,
                if dark { "dark" } else { "light" },
                if phone { "phone" } else { "desktop" },
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
    eprintln!("axe-core, {} pages:\n{report}", PAGES.len());
    assert_eq!(
        blocking, 0,
        "serious or critical accessibility violations:\n{report}"
    );
}

/// A colour from `getComputedStyle` (`rgb(r, g, b)` or `rgba(…)`) as 0–255 channels.
fn rgb(css: &str) -> [f64; 3] {
    let inner = css
        .trim()
        .trim_start_matches("rgba(")
        .trim_start_matches("rgb(")
        .trim_end_matches(')');
    let mut channels = inner.split([',', ' ', '/']).filter(|part| !part.is_empty());
    let mut next = || {
        channels
            .next()
            .and_then(|c| c.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("not an rgb() colour: {css}"))
    };
    [next(), next(), next()]
}

/// WCAG 2 contrast ratio of two colours.
fn contrast(a: [f64; 3], b: [f64; 3]) -> f64 {
    let luminance = |[r, g, b]: [f64; 3]| {
        let channel = |c: f64| {
            let c = c / 255.0;
            if c <= 0.039_28 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)
    };
    let (la, lb) = (luminance(a), luminance(b));
    (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
}

/// The focused element's ring, checked: solid, at least 2 px, and at least 3:1 against
/// the page background. Returns what was measured.
async fn assert_focus_ring(browser: &Browser, context: &str) -> serde_json::Value {
    let focused = browser
        .client
        .execute(
            r#"
            const e = document.activeElement, s = getComputedStyle(e);
            return { id: e.id, tag: e.tagName, text: e.textContent.trim(),
                     top: e.getBoundingClientRect().top, outline: s.outlineStyle,
                     width: parseFloat(s.outlineWidth), color: s.outlineColor,
                     page: getComputedStyle(document.body).backgroundColor };
            "#,
            vec![],
        )
        .await
        .expect("read the focused element");
    assert_eq!(
        focused["outline"], "solid",
        "{context}: no focus ring: {focused}"
    );
    assert!(
        focused["width"].as_f64() >= Some(2.0),
        "{context}: focus ring too thin: {focused}"
    );
    let ratio = contrast(
        rgb(focused["color"].as_str().unwrap_or_default()),
        rgb(focused["page"].as_str().unwrap_or_default()),
    );
    assert!(
        ratio >= 3.0,
        "{context}: focus ring contrast {ratio:.2} is below 3:1: {focused}"
    );
    focused
}

/// Keyboard use, which axe-core cannot judge: the skip link is the first stop and shows
/// on screen, following it moves focus to the content, and every focused control has a
/// ring of at least 3:1 against the page, in both colour schemes.
#[tokio::test]
async fn keyboard_focus_is_visible_and_the_skip_link_works() {
    let Some(turn) = turn().await else { return };
    let app = pages::app().await;
    let browser = turn.browser(&app, Js::On).await;
    for dark in [false, true] {
        let scheme = if dark { "dark" } else { "light" };
        browser.set_dark(dark).await;
        browser.visit("/").await;
        browser.expect_heading("Welcome to Portcullis").await;
        let mut stops = Vec::new();
        for stop in 0..4 {
            browser.press(Key::Tab).await;
            stops.push(assert_focus_ring(&browser, &format!("{scheme}, home, Tab {stop}")).await);
        }
        assert_eq!(
            stops[0]["text"], "Skip to main content",
            "the first stop is the skip link: {stops:?}"
        );
        assert!(
            stops[0]["top"].as_f64() >= Some(0.0),
            "the focused skip link is on screen: {stops:?}"
        );
        // The sign-in form: focus starts in the username field; Tab through the form.
        browser.visit("/login").await;
        browser.expect_heading("Sign in").await;
        assert_eq!(browser.focused_id().await, "username");
        assert_focus_ring(&browser, &format!("{scheme}, sign-in, username")).await;
        browser.press(Key::Tab).await;
        assert_eq!(browser.focused_id().await, "password");
        assert_focus_ring(&browser, &format!("{scheme}, sign-in, password")).await;
        browser.press(Key::Tab).await;
        assert_eq!(browser.focused_id().await, "remember", "keep me signed in");
        assert_focus_ring(&browser, &format!("{scheme}, sign-in, keep me signed in")).await;
        browser.press(Key::Tab).await;
        let button = assert_focus_ring(&browser, &format!("{scheme}, sign-in, button")).await;
        assert_eq!(button["text"], "Sign in", "{button}");
    }
    browser.set_dark(false).await;

    // Following the skip link puts focus on the main content.
    browser.visit("/").await;
    browser.expect_heading("Welcome to Portcullis").await;
    browser.press(Key::Tab).await;
    browser.press(Key::Enter).await;
    assert_eq!(
        browser.focused_id().await,
        "main",
        "focus after the skip link"
    );
    browser.close().await;
}

/// The pages table is restyled into blocks on a phone; Chromium must still present it
/// as a table (rows, column headers, cells) to assistive technology.
#[tokio::test]
async fn the_pages_table_stays_a_table_on_a_phone() {
    let Some(turn) = turn().await else { return };
    let app = pages::app().await;
    let browser = turn.browser(&app, Js::On).await;
    browser.set_viewport(360, 740, true).await;
    browser.visit("/").await;
    browser.expect_heading("Welcome to Portcullis").await;
    let tree = browser.cdp("Accessibility.getFullAXTree", json!({})).await;
    let count = |role: &str| {
        tree["nodes"].as_array().map_or(0, |nodes| {
            nodes.iter().filter(|n| n["role"]["value"] == role).count()
        })
    };
    let rows = PROTECTED_PAGES.len();
    assert_eq!(
        (
            count("table"),
            count("row"),
            count("columnheader"),
            count("cell")
        ),
        (1, rows + 1, 3, rows * 3),
        "table, rows (with the header row), column headers and cells"
    );
    browser.close().await;
}

/// The demo banner (demo mode is not in [`PAGES`]: it needs its own app) is checked on
/// the home and sign-in pages, in both colour schemes.
#[tokio::test]
async fn the_demo_banner_has_no_serious_accessibility_violations() {
    let Some(turn) = turn().await else { return };
    let Some(axe) = axe_source() else { return };
    let app = crate::support::TestApp::spawn_with(|settings| settings.demo = true).await;
    let browser = turn.browser(&app, Js::On).await;
    let mut blocking = Vec::new();
    for path in ["/", "/login"] {
        browser.visit(path).await;
        browser.expect_text("Demo mode.").await;
        for dark in [false, true] {
            browser.set_dark(dark).await;
            for violation in run_axe(&browser, &axe).await {
                if violation.blocks() {
                    blocking.push(format!(
                        "{path} (dark: {dark}): [{}] {}: {} {:?}",
                        violation.impact.as_deref().unwrap_or("?"),
                        violation.id,
                        violation.help,
                        violation.nodes
                    ));
                }
            }
        }
        browser.set_dark(false).await;
    }
    browser.close().await;
    assert!(
        blocking.is_empty(),
        "serious or critical accessibility violations:\n{}",
        blocking.join("\n")
    );
}
