//! Real-browser tests: headless Chromium driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`), against the real app from `support::TestApp`. They assert what a
//! person sees — text, address bar, focus — not status codes.
//!
//! Without Chromium every test here prints `skipped: …` and passes, so `cargo test` works
//! anywhere; with `PORTCULLIS_REQUIRE_BROWSER=1` (CI) a missing browser is a failure.
//! One browser at a time (a process-wide lock): Chromium is heavy and the machines have
//! two cores.
//!
//! - `journeys`: the user journeys, each run with JavaScript on, and all of them again
//!   with JavaScript off (the app's one script only adds passkey buttons).
//! - `pages`: every page in each of its states, in one list shared by the accessibility
//!   check (`a11y`, axe-core) and the screenshots (`screenshots`, `#[ignore]`d: run on
//!   demand, see README).

mod a11y;
pub(crate) mod harness;
mod journeys;
mod pages;
mod screenshots;
