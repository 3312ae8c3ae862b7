//! Where the private cluster's data lives when no `--data-dir` is given.

use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use super::cluster::{absolute, can_traverse, run_as};

/// The data directory used when none is given.
pub const DEFAULT_DATA_DIR: &str = "data";
/// Where root's data goes when [`DEFAULT_DATA_DIR`] is out of the `postgres` user's reach
/// (`PORTCULLIS_ROOT_DATA_DIR` overrides it, for tests and unusual systems).
pub const ROOT_DATA_DIR: &str = "/var/lib/portcullis";

/// The data directory to use: the one given, else `./data`, unless we run as root and the
/// `postgres` user cannot enter it (the usual container or cloud shell: a checkout in
/// root's 0700 home directory), then [`ROOT_DATA_DIR`], which persists like `./data`.
/// The second value says why the fallback was taken, for the log.
pub fn resolve_data_dir(given: Option<&Path>) -> (PathBuf, Option<String>) {
    if let Some(dir) = given {
        return (dir.to_path_buf(), None);
    }
    let default = PathBuf::from(DEFAULT_DATA_DIR);
    let Ok(run_as) = run_as() else {
        return (default, None);
    };
    if !run_as.switch {
        return (default, None);
    }
    let Ok(absolute) = absolute(&default) else {
        return (default, None);
    };
    // The nearest existing ancestor decides (the directory itself may not exist yet).
    let blocked = absolute.ancestors().find_map(|dir| {
        let meta = fs::metadata(dir).ok()?;
        (!can_traverse(&meta, run_as)).then(|| (dir.to_path_buf(), meta.mode() & 0o7777))
    });
    let Some((dir, mode)) = blocked else {
        return (default, None);
    };
    let fallback = std::env::var_os("PORTCULLIS_ROOT_DATA_DIR")
        .map_or_else(|| PathBuf::from(ROOT_DATA_DIR), PathBuf::from);
    let why = format!(
        "the private PostgreSQL runs as the `postgres` user, which cannot enter {} (mode \
         {mode:o}); using {} as the data directory instead (choose one with --data-dir)",
        dir.display(),
        fallback.display()
    );
    (fallback, Some(why))
}
