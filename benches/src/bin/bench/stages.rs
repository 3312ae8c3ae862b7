//! Where a request's time goes inside Portcullis, from its own `/metrics` (Prometheus
//! histograms): scraped before and after a measurement, the difference gives the count,
//! mean and (bucket-resolution) p99 of each stage during it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The token the benchmark starts Portcullis with (`--metrics-token`).
pub const METRICS_TOKEN: &str = "bench-metrics-token-not-a-secret";

/// The histograms the flood scenario reports, with the labels that pick one series and a
/// name for the report.
pub const STAGES: [(&str, &str, &str); 9] = [
    (
        "portcullis_db_acquire_seconds",
        "pool=\"pages\"",
        "page: wait for a database connection",
    ),
    (
        "portcullis_sign_in_stage_seconds",
        "stage=\"admission\"",
        "sign-in: wait in line (admission)",
    ),
    (
        "portcullis_sign_in_stage_seconds",
        "stage=\"throttle\"",
        "sign-in: throttle reservation",
    ),
    (
        "portcullis_sign_in_stage_seconds",
        "stage=\"lookup\"",
        "sign-in: account lookup",
    ),
    (
        "portcullis_sign_in_stage_seconds",
        "stage=\"verify\"",
        "sign-in: verify (hash wait + hash)",
    ),
    (
        "portcullis_password_hash_wait_seconds",
        "",
        "hash: wait for a worker",
    ),
    (
        "portcullis_password_hash_seconds",
        "",
        "hash: argon2id itself",
    ),
    (
        "portcullis_sign_in_stage_seconds",
        "stage=\"finish\"",
        "sign-in: release, session, last sign-in",
    ),
    (
        "http_request_duration_seconds",
        "route=\"/account\",status=\"200\"",
        "page: whole request (GET /account)",
    ),
];

/// One histogram series: cumulative bucket counts by upper bound, sum and count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub buckets: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
}

/// Every histogram series of one scrape, by `name{labels}` (labels without `le`, sorted).
#[derive(Debug, Clone, Default)]
pub struct Scrape(BTreeMap<String, Series>);

/// What a stage did between two scrapes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageFigures {
    pub stage: String,
    pub count: u64,
    pub mean_ms: f64,
    /// The upper bound of the bucket holding the 99th percentile.
    pub p99_ms_at_most: f64,
}

/// Reads `/metrics` of the server at `base`.
pub async fn scrape(base: &str) -> anyhow::Result<Scrape> {
    let text = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(parse(&text))
}

/// Splits `name{a="1",le="0.5"} 3` into the series key (`name{a="1"}`), `le` and value.
fn line_parts(line: &str) -> Option<(String, Option<f64>, f64)> {
    let (head, value) = line.rsplit_once(' ')?;
    let value: f64 = value.trim().parse().ok()?;
    let (name, labels) = match head.split_once('{') {
        Some((name, rest)) => (name, rest.strip_suffix('}')?),
        None => (head, ""),
    };
    let mut le = None;
    let mut kept: Vec<&str> = Vec::new();
    for label in split_labels(labels) {
        match label.strip_prefix("le=") {
            Some(bound) => le = bound.trim_matches('"').parse().ok(),
            None => kept.push(label),
        }
    }
    kept.sort_unstable();
    Some((format!("{name}{{{}}}", kept.join(",")), le, value))
}

/// Label pairs of a Prometheus line (values are quoted and may contain commas).
fn split_labels(labels: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in labels.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&labels[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < labels.len() {
        out.push(&labels[start..]);
    }
    out
}

pub fn parse(text: &str) -> Scrape {
    let mut series: BTreeMap<String, Series> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, le, value)) = line_parts(line) else {
            continue;
        };
        let (name, labels) = key.split_once('{').unwrap_or((&key, "}"));
        if let Some(base) = name.strip_suffix("_bucket") {
            if let Some(le) = le {
                let entry = series.entry(format!("{base}{{{labels}")).or_default();
                entry.buckets.push((le, value));
            }
        } else if let Some(base) = name.strip_suffix("_sum") {
            series.entry(format!("{base}{{{labels}")).or_default().sum = value;
        } else if let Some(base) = name.strip_suffix("_count") {
            series.entry(format!("{base}{{{labels}")).or_default().count = value;
        }
    }
    for s in series.values_mut() {
        s.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    Scrape(series)
}

impl Scrape {
    /// The sum of every series of `name` whose labels include all of `wanted` (a
    /// comma-separated `k="v"` list; empty: all), e.g. all methods of a route.
    fn matching(&self, name: &str, wanted: &str) -> Series {
        let wanted: Vec<&str> = split_labels(wanted);
        let mut total = Series::default();
        for (key, s) in &self.0 {
            let Some(labels) = key
                .strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('{'))
                .and_then(|rest| rest.strip_suffix('}'))
            else {
                continue;
            };
            let have = split_labels(labels);
            if !wanted.iter().all(|w| have.contains(w)) {
                continue;
            }
            total.sum += s.sum;
            total.count += s.count;
            for (le, n) in &s.buckets {
                match total.buckets.iter_mut().find(|(b, _)| b == le) {
                    Some((_, sum)) => *sum += n,
                    None => total.buckets.push((*le, *n)),
                }
            }
        }
        total.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        total
    }

    /// What happened between `before` and `self`: each series' counts, sums and buckets
    /// minus the earlier ones.
    pub fn since(&self, before: &Scrape) -> Scrape {
        let mut out = BTreeMap::new();
        for (key, after) in &self.0 {
            let earlier = before.0.get(key).cloned().unwrap_or_default();
            let buckets = after
                .buckets
                .iter()
                .map(|(le, n)| {
                    let was = earlier
                        .buckets
                        .iter()
                        .find(|(l, _)| l == le)
                        .map_or(0.0, |b| b.1);
                    (*le, n - was)
                })
                .collect();
            out.insert(
                key.clone(),
                Series {
                    buckets,
                    sum: after.sum - earlier.sum,
                    count: after.count - earlier.count,
                },
            );
        }
        Scrape(out)
    }

    /// Adds another difference (from [`Scrape::since`]) to this one.
    pub fn add(&mut self, other: &Scrape) {
        for (key, s) in &other.0 {
            let mine = self.0.entry(key.clone()).or_default();
            mine.sum += s.sum;
            mine.count += s.count;
            for (le, n) in &s.buckets {
                match mine.buckets.iter_mut().find(|(l, _)| l == le) {
                    Some((_, total)) => *total += n,
                    None => mine.buckets.push((*le, *n)),
                }
            }
            mine.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
    }

    /// The stages of [`STAGES`] in a difference (from [`Scrape::since`]).
    pub fn figures(&self) -> Vec<StageFigures> {
        STAGES
            .iter()
            .map(|(name, labels, label)| {
                let s = self.matching(name, labels);
                let count = s.count.max(0.0);
                let p99 = s
                    .buckets
                    .iter()
                    .find(|(_, n)| *n >= 0.99 * count)
                    .map_or(f64::INFINITY, |(le, _)| *le);
                StageFigures {
                    stage: (*label).to_owned(),
                    count: count as u64,
                    mean_ms: if count > 0.0 {
                        s.sum / count * 1000.0
                    } else {
                        0.0
                    },
                    p99_ms_at_most: if count > 0.0 { p99 * 1000.0 } else { 0.0 },
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_read_and_differenced() {
        let before = parse(
            "# TYPE portcullis_db_acquire_seconds histogram\n\
             portcullis_db_acquire_seconds_bucket{pool=\"pages\",le=\"0.001\"} 10\n\
             portcullis_db_acquire_seconds_bucket{pool=\"pages\",le=\"0.01\"} 10\n\
             portcullis_db_acquire_seconds_bucket{pool=\"pages\",le=\"+Inf\"} 10\n\
             portcullis_db_acquire_seconds_sum{pool=\"pages\"} 0.005\n\
             portcullis_db_acquire_seconds_count{pool=\"pages\"} 10\n",
        );
        let after = parse(
            "portcullis_db_acquire_seconds_bucket{pool=\"pages\",le=\"0.001\"} 108\n\
             portcullis_db_acquire_seconds_bucket{pool=\"pages\",le=\"0.01\"} 109\n\
             portcullis_db_acquire_seconds_bucket{pool=\"pages\",le=\"+Inf\"} 110\n\
             portcullis_db_acquire_seconds_sum{pool=\"pages\"} 0.105\n\
             portcullis_db_acquire_seconds_count{pool=\"pages\"} 110\n",
        );
        let stages = after.since(&before).figures();
        let pages = &stages[0];
        assert_eq!(pages.count, 100);
        assert!((pages.mean_ms - 1.0).abs() < 1e-9);
        assert!((pages.p99_ms_at_most - 10.0).abs() < 1e-9);
        assert_eq!(stages[1].count, 0);
    }
}
