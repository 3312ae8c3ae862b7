//! Screenshots of every page in [`PAGES`] for the README, at a desktop and a phone
//! width, into `docs/screenshots/`. Run on demand (it rewrites the files):
//!
//! ```sh
//! cargo test --test it browser::screenshots -- --ignored
//! ```

use std::path::PathBuf;

use super::{
    harness::{Js, turn},
    pages::{self, PAGES},
};

/// (file suffix, width, height, phone?) — CSS pixels.
const SIZES: [(&str, u32, u32, bool); 2] =
    [("desktop", 1440, 900, false), ("phone", 360, 740, true)];

/// Pages also taken in the dark colour scheme (desktop width).
const DARK: [&str; 3] = ["home", "login-wrong-password", "forbidden"];

#[tokio::test]
#[ignore = "rewrites docs/screenshots/; run on demand (see README)"]
async fn screenshots() {
    let Some(turn) = turn().await else { return };
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/screenshots"));
    std::fs::create_dir_all(&dir).expect("create docs/screenshots");
    let site = pages::Site::new().await;
    let browser = turn.browser(&site.app, Js::On).await;
    let mut signed_in = None;
    let mut written = Vec::new();
    for (size, width, height, phone) in SIZES {
        browser.set_viewport(width, height, phone).await;
        for case in PAGES {
            pages::show(&browser, &site, &mut signed_in, case).await;
            let mut shots = vec![(format!("{}-{size}.png", case.name), false)];
            if !phone && DARK.contains(&case.name) {
                shots.push((format!("{}-{size}-dark.png", case.name), true));
            }
            for (file, dark) in shots {
                browser.set_dark(dark).await;
                let png = browser.screenshot_full_page().await;
                std::fs::write(dir.join(&file), png).expect("write screenshot");
                written.push(file);
            }
            browser.set_dark(false).await;
        }
    }
    browser.close().await;
    eprintln!(
        "wrote {} screenshots to {}:\n  {}",
        written.len(),
        dir.display(),
        written.join("\n  ")
    );
}
