//! Headless Chromium through chromedriver, and the page operations the tests use.
//!
//! Each test takes a [`Turn`] (the process-wide lock, or a skip when Chromium is not
//! installed), then launches one or more [`Browser`]s: a private chromedriver on a free
//! port and a fresh Chromium profile each, ended when the `Browser` is dropped.

use std::{
    io::Write,
    net::{Ipv4Addr, TcpListener, TcpStream},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use axum::http::Method;
use base64::Engine;
use fantoccini::{
    Client, ClientBuilder, Locator,
    actions::{InputSource, KeyAction, KeyActions},
    elements::Element,
    key::Key,
    wd::{Capabilities, WebDriverCompatibleCommand},
};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::sync::{Mutex, MutexGuard};

use crate::support::TestApp;

/// Set to `1` (CI does) to make a missing browser a failure instead of a skip.
pub const REQUIRE_BROWSER: &str = "PORTCULLIS_REQUIRE_BROWSER";
/// One Chromium at a time across the whole test process.
static ONE_BROWSER_AT_A_TIME: Mutex<()> = Mutex::const_new(());
static NEXT_PROFILE: AtomicUsize = AtomicUsize::new(0);
/// How long a page may take to show what a test waits for after a click.
const SETTLE: Duration = Duration::from_secs(5);
const DRIVER_START: Duration = Duration::from_secs(15);

/// libtest names each test's thread after the test.
fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("browser test")
        .to_owned()
}

pub fn browser_required() -> bool {
    std::env::var(REQUIRE_BROWSER).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// A missing prerequisite: says `skipped: <test>: <why>` on the terminal (written past
/// libtest's output capture, so it is seen in a plain `cargo test`), or fails when the
/// browser suite is required.
pub fn skip(why: &str) {
    let test = test_name();
    assert!(
        !browser_required(),
        "{test}: {why} — {REQUIRE_BROWSER}=1 is set, so the browser suite must run"
    );
    let _ = writeln!(std::io::stderr(), "skipped: {test}: {why}");
}

struct Tools {
    chromedriver: PathBuf,
    chromium: PathBuf,
}

fn tools() -> Result<Tools, String> {
    let path = |var: &str, default: &str| {
        std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from)
    };
    let tools = Tools {
        chromedriver: path("PORTCULLIS_CHROMEDRIVER", "/usr/bin/chromedriver"),
        chromium: path("PORTCULLIS_CHROMIUM", "/usr/bin/chromium"),
    };
    for tool in [&tools.chromedriver, &tools.chromium] {
        if !tool.is_file() {
            return Err(format!(
                "{} not found (Debian: apt-get install chromium chromium-driver)",
                tool.display()
            ));
        }
    }
    Ok(tools)
}

/// This test's turn at the browser (holds the process-wide lock).
pub struct Turn {
    tools: Tools,
    _lock: MutexGuard<'static, ()>,
}

/// For timing-sensitive tests elsewhere: waits until no browser test runs (Chromium
/// loads both cores), and keeps them from starting until the guard is dropped.
pub async fn quiet_machine() -> MutexGuard<'static, ()> {
    ONE_BROWSER_AT_A_TIME.lock().await
}

/// Waits for this test's turn at the browser; `None` (after saying so) without Chromium.
pub async fn turn() -> Option<Turn> {
    let tools = match tools() {
        Ok(tools) => tools,
        Err(why) => {
            skip(&why);
            return None;
        }
    };
    let lock = ONE_BROWSER_AT_A_TIME.lock().await;
    Some(Turn { tools, _lock: lock })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Js {
    On,
    Off,
}

impl Turn {
    /// A fresh browser (own profile: no cookies, no history) pointed at `app`.
    pub async fn browser(&self, app: &TestApp, js: Js) -> Browser {
        Browser::launch(&self.tools, app.url(""), js).await
    }
}

/// chromedriver and the Chromium it starts, in a process group of their own: dropping
/// this kills the group (a test that panics leaves no browser behind) and deletes the
/// profile. Should the test process die first, the parent-death signal ends chromedriver.
struct DriverProcess {
    child: Child,
    profile: PathBuf,
}

impl Drop for DriverProcess {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl DriverProcess {
    fn log(&self) -> String {
        std::fs::read_to_string(self.profile.join("chromedriver.log"))
            .map(|log| {
                let lines: Vec<&str> = log.lines().collect();
                lines[lines.len().saturating_sub(40)..].join("\n")
            })
            .unwrap_or_default()
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port for chromedriver")
}

fn start_driver(tools: &Tools, profile: &Path) -> (DriverProcess, u16) {
    let port = free_port();
    let mut command = Command::new(&tools.chromedriver);
    command
        .arg(format!("--port={port}"))
        .arg(format!(
            "--log-path={}",
            profile.join("chromedriver.log").display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    // SAFETY: prctl is async-signal-safe; it runs in the child between fork and exec.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", tools.chromedriver.display()));
    let mut driver = DriverProcess {
        child,
        profile: profile.to_owned(),
    };
    let started = Instant::now();
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        if let Ok(Some(status)) = driver.child.try_wait() {
            panic!("chromedriver exited ({status}) at start:\n{}", driver.log());
        }
        assert!(
            started.elapsed() < DRIVER_START,
            "chromedriver did not listen on port {port}:\n{}",
            driver.log()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    (driver, port)
}

fn capabilities(chromium: &Path, profile: &Path, js: Js) -> Capabilities {
    let mut args = vec![
        "--headless=new".to_owned(),
        // Root in a container: no sandbox. No GPU here.
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        // The network is closed: nothing in the background may try to reach out.
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--no-default-browser-check".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--disable-extensions".to_owned(),
        "--disable-default-apps".to_owned(),
        "--disable-domain-reliability".to_owned(),
        "--disable-client-side-phishing-detection".to_owned(),
        "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication"
            .to_owned(),
        "--no-pings".to_owned(),
        "--password-store=basic".to_owned(),
        // Stable pictures: sRGB, no scrollbars, English UI.
        "--force-color-profile=srgb".to_owned(),
        "--hide-scrollbars".to_owned(),
        "--lang=en-US".to_owned(),
        "--window-size=1280,900".to_owned(),
        format!("--user-data-dir={}", profile.join("chromium").display()),
    ];
    // Extra switches for diagnosis, e.g. PORTCULLIS_CHROMIUM_ARGS=--disable-features=X
    if let Ok(extra) = std::env::var("PORTCULLIS_CHROMIUM_ARGS") {
        args.extend(extra.split_whitespace().map(str::to_owned));
    }
    let mut prefs = json!({
        "credentials_enable_service": false,
        "profile.password_manager_enabled": false,
        "profile.password_manager_leak_detection": false,
    });
    if js == Js::Off {
        args.push("--blink-settings=scriptEnabled=false".to_owned());
        prefs["profile.managed_default_content_settings.javascript"] = json!(2);
    }
    let capabilities = json!({
        "browserName": "chrome",
        "pageLoadStrategy": "normal",
        "timeouts": { "pageLoad": 30_000, "script": 30_000, "implicit": 0 },
        "goog:chromeOptions": {
            "binary": chromium,
            "args": args,
            "prefs": prefs,
        },
    });
    match capabilities {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object"),
    }
}

/// A Chromium DevTools command, through chromedriver's `goog/cdp/execute` endpoint:
/// emulation (viewport, colour scheme) and full-page screenshots.
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (Method, Option<String>) {
        let body = json!({ "cmd": self.cmd, "params": self.params });
        (Method::POST, Some(body.to_string()))
    }
}

/// One headless Chromium with its own profile, pointed at one app.
pub struct Browser {
    pub client: Client,
    base: String,
    pub js: Js,
    // Dropped after `client`: the session goes first, then the processes.
    _driver: DriverProcess,
}

impl Browser {
    async fn launch(tools: &Tools, base: String, js: Js) -> Browser {
        let profile = std::env::temp_dir().join(format!(
            "pc-browser-{}-{}",
            std::process::id(),
            NEXT_PROFILE.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).expect("create the browser profile directory");
        let (driver, port) = start_driver(tools, &profile);
        let connecting = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities(&tools.chromium, &profile, js))
            .connect(&format!("http://127.0.0.1:{port}/"))
            .await;
        let client = match connecting {
            Ok(client) => client,
            Err(e) => panic!(
                "starting Chromium: {e}\nchromedriver log:\n{}",
                driver.log()
            ),
        };
        let browser = Browser {
            client,
            base,
            js,
            _driver: driver,
        };
        if js == Js::Off {
            browser.assert_scripts_do_not_run().await;
        }
        browser
    }

    /// Proof that the no-JavaScript session really has no JavaScript: a page whose
    /// script would change its title keeps it.
    async fn assert_scripts_do_not_run(&self) {
        self.client
            .goto("data:text/html,<title>no script</title><script>document.title='script ran'</script>")
            .await
            .expect("open a data: page");
        let title = self.client.title().await.expect("title");
        assert_eq!(title, "no script", "JavaScript is still enabled");
    }

    /// Ends the WebDriver session cleanly (Chromium exits), then the processes.
    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.client.clone().close()).await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn visit(&self, path: &str) {
        if let Err(e) = self.client.goto(&self.url(path)).await {
            self.fail(format!("opening {path}: {e}")).await;
        }
    }

    /// Opens an absolute address: another app than the one this browser was started for.
    pub async fn open(&self, url: &str) {
        if let Err(e) = self.client.goto(url).await {
            self.fail(format!("opening {url}: {e}")).await;
        }
    }

    /// Reloads the page, as the browser's reload button does.
    pub async fn reload(&self) {
        if let Err(e) = self.client.refresh().await {
            self.fail(format!("reloading: {e}")).await;
        }
    }

    /// Forgets the cookies of every site. (WebDriver's "delete all cookies" reaches only
    /// the current page's site.)
    pub async fn forget_cookies(&self) {
        self.cdp("Network.clearBrowserCookies", json!({})).await;
    }

    pub async fn back(&self) {
        if let Err(e) = self.client.back().await {
            self.fail(format!("going back: {e}")).await;
        }
    }

    /// The address bar's path and query (`/login?next=%2Freports&notice=required`).
    pub async fn location(&self) -> String {
        match self.client.current_url().await {
            Ok(url) => match url.query() {
                Some(query) => format!("{}?{query}", url.path()),
                None => url.path().to_owned(),
            },
            Err(e) => format!("<no url: {e}>"),
        }
    }

    /// The address bar's fragment (`access` in `/help/access#access`), if any.
    pub async fn fragment(&self) -> Option<String> {
        let url = self.client.current_url().await.ok()?;
        url.fragment().map(str::to_owned)
    }

    /// The page's visible text.
    pub async fn text(&self) -> String {
        match self.client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    pub async fn heading(&self) -> String {
        match self.client.find(Locator::Css("h1")).await {
            Ok(h1) => h1.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    pub async fn find(&self, css: &str) -> Element {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element,
            Err(e) => self.fail(format!("no element {css}: {e}")).await,
        }
    }

    /// How many elements match `css` (none is an answer, not a failure).
    pub async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(Locator::Css(css))
            .await
            .map_or(0, |elements| elements.len())
    }

    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        let element = self.find(css).await;
        element.attr(name).await.ok().flatten()
    }

    /// A form field's current value (what the person sees in it).
    pub async fn value(&self, css: &str) -> String {
        let element = self.find(css).await;
        element
            .prop("value")
            .await
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// The `id` of the element that has keyboard focus.
    /// Waits (up to the settle time) while nothing has focus yet: Chromium applies
    /// `autofocus` at a rendering update, which on a page that loads a script (the passkey
    /// pages) can come just after the page's text is there.
    pub async fn focused_id(&self) -> String {
        let started = Instant::now();
        loop {
            let element = match self.client.active_element().await {
                Ok(element) => element,
                Err(e) => return format!("<no active element: {e}>"),
            };
            let on_body = element.tag_name().await.is_ok_and(|tag| tag == "body");
            if !on_body || started.elapsed() > SETTLE {
                return element.attr("id").await.ok().flatten().unwrap_or_default();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Types into a field as a person would (after clearing it).
    pub async fn fill(&self, css: &str, value: &str) {
        let field = self.find(css).await;
        if let Err(e) = field.clear().await {
            self.fail(format!("clearing {css}: {e}")).await;
        }
        if let Err(e) = field.send_keys(value).await {
            self.fail(format!("typing into {css}: {e}")).await;
        }
    }

    /// Clicks what matches `css` and waits for the page it leads to.
    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.navigate_by(element, css).await;
    }

    /// Clicks `element`, which leads to another page (a link, a form's button), and waits
    /// until the old page is gone: a form re-shown at the same address (a failed
    /// sign-in) would otherwise pass for the new page before it has arrived.
    async fn navigate_by(&self, element: Element, what: &str) {
        let old_page = self.find("html").await;
        if let Err(e) = element.click().await {
            self.fail(format!("clicking {what}: {e}")).await;
        }
        self.wait_until(
            || format!("clicking {what} did not lead to a new page"),
            async |_| {
                matches!(
                    old_page.tag_name().await,
                    Err(fantoccini::error::CmdError::Standard(e))
                        if e.error == fantoccini::error::ErrorStatus::StaleElementReference
                )
            },
        )
        .await;
    }

    /// Clicks the link whose text is exactly `text`, and waits for the page it leads to.
    pub async fn click_link(&self, text: &str) {
        let link = match self.client.find(Locator::LinkText(text)).await {
            Ok(link) => link,
            Err(e) => self.fail(format!("no link {text:?}: {e}")).await,
        };
        self.navigate_by(link, &format!("link {text:?}")).await;
    }

    /// Clicks the button whose text is exactly `text`, and waits for the page it leads to.
    pub async fn click_button(&self, text: &str) {
        let xpath = format!("//button[normalize-space()='{text}']");
        let button = match self.client.find(Locator::XPath(&xpath)).await {
            Ok(button) => button,
            Err(e) => self.fail(format!("no button {text:?}: {e}")).await,
        };
        self.navigate_by(button, &format!("button {text:?}")).await;
    }

    /// Chooses the option with this value in a `<select>`.
    pub async fn choose(&self, css: &str, value: &str) {
        let select = self.find(css).await;
        if let Err(e) = select.select_by_value(value).await {
            self.fail(format!("choosing {value:?} in {css}: {e}")).await;
        }
    }

    /// Presses and releases a key, wherever focus is.
    pub async fn press(&self, key: Key) {
        let value = char::from(key);
        let keys = KeyActions::new("keyboard".to_owned())
            .then(KeyAction::Down { value })
            .then(KeyAction::Up { value });
        if let Err(e) = self.client.perform_actions(keys).await {
            self.fail(format!("pressing {key:?}: {e}")).await;
        }
    }

    /// Fills in the sign-in form on the current page and sends it.
    pub async fn sign_in(&self, username: &str, password: &str) {
        self.fill("#username", username).await;
        self.fill("#password", password).await;
        self.click("main form button[type=submit]").await;
    }

    /// The "Sign out" button in the page header.
    pub async fn sign_out(&self) {
        self.click("header form[action='/logout'] button").await;
    }

    /// Waits until the address bar shows `expected` (path and query).
    pub async fn expect_location(&self, expected: &str) {
        let started = Instant::now();
        loop {
            let location = self.location().await;
            if location == expected {
                return;
            }
            if started.elapsed() > SETTLE {
                self.fail(format!("expected to be at {expected}, but at {location}"))
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the address bar's path (without query) is `expected`.
    pub async fn expect_path(&self, expected: &str) {
        let started = Instant::now();
        loop {
            let location = self.location().await;
            if location.split('?').next() == Some(expected) {
                return;
            }
            if started.elapsed() > SETTLE {
                self.fail(format!("expected to be on {expected}, but at {location}"))
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `ready` holds for the page, or fails with `what`.
    async fn wait_until(&self, what: impl Fn() -> String, ready: impl AsyncFn(&Self) -> bool) {
        let started = Instant::now();
        while !ready(self).await {
            if started.elapsed() > SETTLE {
                self.fail(what()).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the page's `h1` reads `expected`.
    pub async fn expect_heading(&self, expected: &str) {
        self.wait_until(
            || format!("expected the heading {expected:?}"),
            async |page| page.heading().await == expected,
        )
        .await;
    }

    /// Waits until the page says `needle`.
    pub async fn expect_text(&self, needle: &str) {
        self.wait_until(
            || format!("expected the page to say {needle:?}"),
            async |page| page.text().await.contains(needle),
        )
        .await;
    }

    /// Checks, once the page has loaded (it has an `h1`), that it does not say `needle`.
    pub async fn expect_no_text(&self, needle: &str) {
        self.wait_until(
            || "expected a page with a heading".to_owned(),
            async |page| !page.heading().await.is_empty(),
        )
        .await;
        if self.text().await.contains(needle) {
            self.fail(format!("expected the page not to say {needle:?}"))
                .await;
        }
    }

    /// Fails the test with what the person would see: address, heading and text.
    pub async fn fail(&self, what: String) -> ! {
        let location = self.location().await;
        let text: String = self.text().await.chars().take(1500).collect();
        panic!(
            "{what}\n  JavaScript: {:?}\n  at: {location}\n  page text:\n{text}",
            self.js
        );
    }

    pub async fn cdp(&self, cmd: &'static str, params: Value) -> Value {
        match self.client.issue_cmd(Cdp { cmd, params }).await {
            Ok(value) => value,
            Err(e) => self.fail(format!("DevTools {cmd}: {e}")).await,
        }
    }

    /// Emulates a screen `width` × `height` CSS pixels (a phone when `mobile`).
    pub async fn set_viewport(&self, width: u32, height: u32, mobile: bool) {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile }),
        )
        .await;
    }

    /// Back to the window's own size.
    pub async fn reset_viewport(&self) {
        self.cdp("Emulation.clearDeviceMetricsOverride", json!({}))
            .await;
    }

    /// Emulates the person's colour-scheme preference.
    pub async fn set_dark(&self, dark: bool) {
        let scheme = if dark { "dark" } else { "light" };
        self.cdp(
            "Emulation.setEmulatedMedia",
            json!({ "features": [{ "name": "prefers-color-scheme", "value": scheme }] }),
        )
        .await;
    }

    /// A PNG of the whole page (not just the viewport) at the current emulated width.
    pub async fn screenshot_full_page(&self) -> Vec<u8> {
        let metrics = self.cdp("Page.getLayoutMetrics", json!({})).await;
        let width = metrics["cssLayoutViewport"]["clientWidth"]
            .as_f64()
            .unwrap_or(1280.0);
        let height = metrics["cssContentSize"]["height"]
            .as_f64()
            .unwrap_or(900.0)
            .max(
                metrics["cssLayoutViewport"]["clientHeight"]
                    .as_f64()
                    .unwrap_or(0.0),
            );
        let shot = self
            .cdp(
                "Page.captureScreenshot",
                json!({
                    "format": "png",
                    "captureBeyondViewport": true,
                    "clip": { "x": 0, "y": 0, "width": width, "height": height, "scale": 1 },
                }),
            )
            .await;
        let data = shot["data"].as_str().unwrap_or_default();
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("screenshot is base64")
    }
}
