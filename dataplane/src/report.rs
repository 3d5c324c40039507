//! Human-readable reports of a run: counters per worker and in total, drops
//! by reason, flows by state.

use std::fmt::Write;

use crate::engine::flow::STATE_COUNT;
use crate::run::RunOutcome;
use crate::stats::{WorkerStats, states_by_name};

/// Formats a number with thousands separators (`1,234,567`).
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The per-worker table and totals of a run.
pub fn render(outcome: &RunOutcome) -> String {
    let mut s = String::new();
    let d = &outcome.dataplane;
    let t = &d.snapshot.total;
    let secs = outcome.elapsed.as_secs_f64().max(1e-9);
    let _ = writeln!(
        s,
        "port {}: {} frames in, {} out{}",
        d.port,
        thousands(outcome.pcap.frames_in),
        thousands(outcome.pcap.frames_out),
        if outcome.interrupted {
            " (interrupted)"
        } else {
            ""
        }
    );
    if outcome.pcap.skipped_non_ethernet + outcome.pcap.truncated_in_capture > 0 {
        let _ = writeln!(
            s,
            "  capture: {} non-Ethernet frames skipped, {} frames cut by the snap length",
            outcome.pcap.skipped_non_ethernet, outcome.pcap.truncated_in_capture
        );
    }
    let _ = writeln!(
        s,
        "{:<8} {:>6} {:>12} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "worker", "core", "rx", "tx", "dropped", "flows+", "expired", "evicted", "active"
    );
    let row = |s: &mut String, name: &str, core: String, w: &WorkerStats| {
        let _ = writeln!(
            s,
            "{:<8} {:>6} {:>12} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10}",
            name,
            core,
            thousands(w.rx_packets),
            thousands(w.tx_packets),
            thousands(w.dropped),
            thousands(w.flows.created),
            thousands(w.flows.expired),
            thousands(w.flows.evicted),
            thousands(w.flows.active),
        );
    };
    for (report, stats) in d.workers.iter().zip(d.snapshot.workers.iter()) {
        let core = report
            .pinned
            .map_or_else(|| "-".to_string(), |c| c.to_string());
        row(&mut s, &report.id.to_string(), core, stats);
    }
    row(&mut s, "total", String::new(), t);
    if !t.drops.is_empty() {
        let reasons: Vec<String> = t.drops.iter().map(|(r, n)| format!("{r} {n}")).collect();
        let _ = writeln!(s, "drops by reason: {}", reasons.join(", "));
    }
    if !t.marks.is_empty() || !t.bites.is_empty() {
        let join = |m: &std::collections::BTreeMap<&str, u64>| {
            m.iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            s,
            "marks: {}; bites: {}; latches (summed over workers): {}; forged or stale cookies: {}",
            join(&t.marks),
            if t.bites.is_empty() {
                "none".to_string()
            } else {
                join(&t.bites)
            },
            t.latched,
            t.bad_cookies
        );
    }
    let mut hist = [0u64; STATE_COUNT];
    for w in &d.workers {
        for (h, v) in hist.iter_mut().zip(w.flow_states.iter()) {
            *h += v;
        }
    }
    let states: Vec<String> = states_by_name(&hist)
        .into_iter()
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    if !states.is_empty() {
        let _ = writeln!(s, "live flows by state: {}", states.join(", "));
    }
    let _ = writeln!(
        s,
        "{:.2} s wall time, {:.1} kpps through the workers (paced by the replay; not a benchmark)",
        secs,
        t.rx_packets as f64 / secs / 1e3
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
