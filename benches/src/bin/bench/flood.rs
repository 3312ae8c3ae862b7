//! Section 5 of the report: the page load alone and under a sign-in flood, round by
//! round, with Portcullis' own stage timings.

use std::fmt::Write as _;

use crate::{Results, report::errors, report::mib, scenarios::FloodRound};

/// Every round's p99 ratio (flooded ÷ alone) for `server`.
pub fn ratios(results: &Results, server: &str) -> Vec<f64> {
    results
        .isolation
        .iter()
        .find(|i| i.server == server)
        .map_or_else(Vec::new, |i| {
            i.rounds.iter().map(FloodRound::ratio).collect()
        })
}

/// Median sign-ins per second during Portcullis' flood rounds.
pub fn sign_in_rate(results: &Results) -> Option<f64> {
    let rounds = &results
        .isolation
        .iter()
        .find(|i| i.server == "portcullis")?
        .rounds;
    let rates: Vec<f64> = rounds.iter().map(FloodRound::sign_ins_per_s).collect();
    (!rates.is_empty()).then(|| crate::report::median(rates))
}

pub fn section(out: &mut String, results: &Results) {
    let plan = &results.plan;
    let _ = writeln!(
        out,
        "\n## 5. Isolation: the hot path under a sign-in flood\n"
    );
    let _ = writeln!(
        out,
        "Scenario 2's load (`GET /account`, {} connections) alone, then while {} connections \
         post correct sign-ins as fast as they are answered (the flood starts 1.5 s before the \
         measured slice and ends after it; it signs in its own {} users, so the page users' \
         session lists do not grow); alternately, {} × {} s per condition, each condition's \
         latencies pooled, so that both meet the same background on this shared machine. {} \
         round(s) per server, each judged on its own; in the last {} round(s) {} busy \
         processes (one core each, in their own session, as another program on the machine \
         would be) run throughout. Portcullis runs with its defaults: {} hashing worker(s), a \
         database pool of 10 connections.\n",
        plan.page_connections,
        plan.flood_connections,
        plan.flood_users,
        plan.isolation_slices,
        plan.isolation_s,
        plan.isolation_rounds,
        plan.neighbour_rounds,
        plan.neighbours,
        results.portcullis_hash_workers,
    );
    let _ = writeln!(
        out,
        "| Server | round | busy neighbours | p99 alone ms | p99 under flood ms | ratio | p50 alone → under flood ms | req/s alone → under flood | flood sign-ins/s | vs raw, all cores | flood errors |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---|---|---:|---:|---|");
    let raw = results.sign_in.raw_hash_rate.max(1e-9);
    for isolation in &results.isolation {
        for (n, round) in isolation.rounds.iter().enumerate() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.2} | {:.2} | **{:.2}×** | {:.2} → {:.2} | {:.0} → {:.0} | {:.1} | {:.2}× | {} |",
                isolation.server,
                n + 1,
                round.neighbours,
                round.alone.p99_ms,
                round.flooded.p99_ms,
                round.ratio(),
                round.alone.p50_ms,
                round.flooded.p50_ms,
                round.alone.rps,
                round.flooded.rps,
                round.sign_ins_per_s(),
                round.sign_ins_per_s() / raw,
                errors(&round.flood)
            );
        }
        let _ = writeln!(
            out,
            "\nRSS of **{}** after its rounds: {} MiB.\n",
            isolation.server,
            mib(isolation.rss_after_kb)
        );
    }
    stage_table(out, results);
}

/// Where Portcullis' time went during each flooded page load, from its `/metrics`.
fn stage_table(out: &mut String, results: &Results) {
    let Some(ours) = results.isolation.iter().find(|i| i.server == "portcullis") else {
        return;
    };
    let Some(first) = ours.rounds.iter().find(|r| !r.stages.is_empty()) else {
        return;
    };
    let _ = writeln!(
        out,
        "Portcullis' stage timings during each flooded page load (its own histograms at \
         `/metrics`, scraped before and after; mean, and the upper bound of the bucket holding \
         the 99th percentile):\n"
    );
    let mut header = String::from("| Stage |");
    let mut rule = String::from("|---|");
    for (n, _) in ours.rounds.iter().enumerate() {
        let _ = write!(header, " round {} count | mean ms | p99 ≤ ms |", n + 1);
        rule.push_str("---:|---:|---:|");
    }
    let _ = writeln!(out, "{header}\n{rule}");
    for (i, stage) in first.stages.iter().enumerate() {
        let mut line = format!("| {} |", stage.stage);
        for round in &ours.rounds {
            match round.stages.get(i) {
                Some(s) => {
                    let _ = write!(
                        line,
                        " {} | {:.3} | {} |",
                        s.count,
                        s.mean_ms,
                        if s.p99_ms_at_most.is_finite() {
                            format!("{:.1}", s.p99_ms_at_most)
                        } else {
                            "> 5000".into()
                        }
                    );
                }
                None => line.push_str(" | | |"),
            }
        }
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(
        out,
        "\nServer CPU per page request during the flood (sign-ins included): {}.",
        ours.rounds
            .iter()
            .map(|r| format!("{:.0} µs", r.server_cpu_us_per_page))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
