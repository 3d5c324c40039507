//! The workers' counters as control reads them from the region: named by
//! the dataplane itself (one line `"<type> <name>[ <label>=<value>]"` per
//! cell), so control needs no list of its own and a newer dataplane's new
//! counters show up without a change here. Turned into JSON for `stats`
//! and into Prometheus text for `/metrics`.

use std::fmt::Write;

use serde_json::{Map, Value};

/// A counter only grows; a gauge goes up and down.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Type {
    /// Grows.
    Counter,
    /// Goes up and down.
    Gauge,
}

/// One named cell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cell {
    /// Counter or gauge.
    pub ty: Type,
    /// The name (`rx_packets`, `drops`).
    pub name: String,
    /// A label, for families (`reason`, `truncated`).
    pub label: Option<(String, String)>,
}

/// Parses the region's names; lines that do not parse are skipped (their
/// cells are then never read).
pub fn parse_names(lines: &[String]) -> Vec<Option<Cell>> {
    lines
        .iter()
        .map(|line| {
            let mut parts = line.split(' ');
            let ty = match parts.next()? {
                "counter" => Type::Counter,
                "gauge" => Type::Gauge,
                _ => return None,
            };
            let name = parts.next().filter(|n| valid(n))?.to_string();
            let label = match parts.next() {
                None => None,
                Some(l) => {
                    let (k, v) = l.split_once('=')?;
                    if !valid(k) || !valid(v) {
                        return None;
                    }
                    Some((k.to_string(), v.to_string()))
                }
            };
            Some(Cell { ty, name, label })
        })
        .collect()
}

/// Names and label values are `[a-z0-9_]`, so they are safe in JSON keys
/// and Prometheus names without escaping.
fn valid(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// One worker's counters as JSON: plain cells as numbers, labelled cells
/// grouped (`"drops": {"truncated": 3, ...}`).
pub fn worker_json(cells: &[Option<Cell>], values: &[u64]) -> Value {
    let mut obj = Map::new();
    for (cell, v) in cells.iter().zip(values) {
        let Some(cell) = cell else { continue };
        match &cell.label {
            None => {
                obj.insert(cell.name.clone(), (*v).into());
            }
            Some((_, value)) => {
                let group = obj
                    .entry(cell.name.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(g) = group {
                    g.insert(value.clone(), (*v).into());
                }
            }
        }
    }
    Value::Object(obj)
}

/// Every worker's values summed cell by cell; the `generation` gauge is
/// the lowest (the generation in force on every worker).
pub fn sum(cells: &[Option<Cell>], workers: &[Vec<u64>]) -> Vec<u64> {
    let n = cells.len();
    (0..n)
        .map(|i| {
            let column = workers.iter().map(|w| w.get(i).copied().unwrap_or(0));
            match cells.get(i) {
                Some(Some(c)) if c.name == "generation" => column.min().unwrap_or(0),
                _ => column.sum(),
            }
        })
        .collect()
}

/// Help text for the metrics we know; others get a generic line.
fn help(name: &str) -> &'static str {
    match name {
        "rx_packets" => "Frames received.",
        "rx_bytes" => "Bytes received.",
        "tx_packets" => "Frames transmitted (forwarded and marks).",
        "tx_bytes" => "Bytes transmitted.",
        "drops" => "Frames dropped, by reason.",
        "marks" => "Marks (decoy replies) sent, by kind.",
        "bites" => "Bites seen, by kind.",
        "latched" => "Sources latched by this worker.",
        "claims" => "Addresses claimed as decoys: a request for them went unanswered.",
        "yields" => "Claimed addresses given back to an owner that showed itself.",
        "flows_active" => "Flows tracked now.",
        "generation" => "Rule generation in force.",
        _ => "A dataplane counter (see docs/control-socket.md).",
    }
}

/// Appends the workers' cells as Prometheus text: `baitwall_<name>_total`
/// for counters (`_bytes` kept as the unit), `baitwall_<name>` for gauges,
/// a `worker` label on every sample and the cell's own label where it has
/// one. No sample ever carries an address.
pub fn prometheus(out: &mut String, cells: &[Option<Cell>], workers: &[Vec<u64>]) {
    let mut seen: Vec<&str> = Vec::new();
    for (i, cell) in cells.iter().enumerate() {
        let Some(cell) = cell else { continue };
        let metric = match cell.ty {
            Type::Counter => format!("baitwall_{}_total", cell.name),
            Type::Gauge => format!("baitwall_{}", cell.name),
        };
        if !seen.contains(&cell.name.as_str()) {
            seen.push(&cell.name);
            let ty = match cell.ty {
                Type::Counter => "counter",
                Type::Gauge => "gauge",
            };
            let _ = writeln!(out, "# HELP {metric} {}", help(&cell.name));
            let _ = writeln!(out, "# TYPE {metric} {ty}");
        }
        for (w, values) in workers.iter().enumerate() {
            let v = values.get(i).copied().unwrap_or(0);
            match &cell.label {
                None => {
                    let _ = writeln!(out, "{metric}{{worker=\"{w}\"}} {v}");
                }
                Some((k, value)) => {
                    let _ = writeln!(out, "{metric}{{worker=\"{w}\",{k}=\"{value}\"}} {v}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn names() -> Vec<String> {
        [
            "counter rx_packets",
            "gauge generation",
            "counter drops reason=truncated",
            "counter drops reason=blocked",
            "bogus line",
            "counter Bad-Name",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn names_parse_and_bad_ones_are_skipped() {
        let cells = parse_names(&names());
        assert_eq!(cells.len(), 6);
        assert!(cells[4].is_none() && cells[5].is_none());
        assert_eq!(
            cells[2].as_ref().unwrap().label,
            Some(("reason".into(), "truncated".into()))
        );
    }

    #[test]
    fn json_groups_labelled_cells_and_sums_take_the_lowest_generation() {
        let cells = parse_names(&names());
        let w = vec![vec![10, 7, 1, 2, 99, 99], vec![5, 6, 0, 3, 99, 99]];
        let total = sum(&cells, &w);
        assert_eq!(
            worker_json(&cells, &total),
            serde_json::json!({"rx_packets": 15, "generation": 6, "drops": {"truncated": 1, "blocked": 5}})
        );
    }

    #[test]
    fn prometheus_text_has_types_units_and_worker_labels() {
        let cells = parse_names(&names());
        let mut out = String::new();
        prometheus(&mut out, &cells, &[vec![10, 7, 1, 2], vec![5, 6, 0, 3]]);
        assert!(out.contains("# TYPE baitwall_rx_packets_total counter\n"));
        assert!(out.contains("baitwall_rx_packets_total{worker=\"1\"} 5\n"));
        assert!(out.contains("# TYPE baitwall_generation gauge\n"));
        assert!(out.contains("baitwall_drops_total{worker=\"0\",reason=\"blocked\"} 2\n"));
        assert_eq!(out.matches("# TYPE baitwall_drops_total").count(), 1);
    }
}
