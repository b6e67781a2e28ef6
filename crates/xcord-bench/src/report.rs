//! Results: percentiles, rows, the table and the JSON lines.

use std::fmt::Write as _;

/// Latencies in microseconds.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    us: Vec<u32>,
    sorted: bool,
}

impl Latencies {
    /// Adds one.
    pub fn add(&mut self, d: std::time::Duration) {
        self.us
            .push(u32::try_from(d.as_micros()).unwrap_or(u32::MAX));
        self.sorted = false;
    }

    /// Takes all of `other`.
    pub fn merge(&mut self, other: Latencies) {
        self.us.extend(other.us);
        self.sorted = false;
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.us.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.us.is_empty()
    }

    fn sort(&mut self) {
        if !self.sorted {
            self.us.sort_unstable();
            self.sorted = true;
        }
    }

    /// The `q`th percentile in milliseconds (nearest rank).
    pub fn p(&mut self, q: f64) -> Option<f64> {
        if self.us.is_empty() {
            return None;
        }
        self.sort();
        let rank = ((q / 100.0) * self.us.len() as f64).ceil() as usize;
        let i = rank.clamp(1, self.us.len()) - 1;
        Some(f64::from(self.us[i]) / 1000.0)
    }

    /// The largest, in milliseconds.
    pub fn max(&mut self) -> Option<f64> {
        self.p(100.0)
    }
}

/// One line of results: a phase and its figures, in order.
#[derive(Debug, Clone)]
pub struct Row {
    /// The phase.
    pub phase: String,
    /// `(name, value)`; `None` when not measured.
    pub values: Vec<(String, Option<f64>)>,
}

impl Row {
    /// A row for `phase`.
    pub fn new(phase: &str) -> Self {
        Self {
            phase: phase.to_owned(),
            values: Vec::new(),
        }
    }

    /// Adds a figure.
    pub fn num(mut self, name: &str, v: f64) -> Self {
        self.values.push((name.to_owned(), Some(v)));
        self
    }

    /// Adds a figure that may be missing.
    pub fn opt(mut self, name: &str, v: Option<f64>) -> Self {
        self.values.push((name.to_owned(), v));
        self
    }

    /// Adds a latency in milliseconds.
    pub fn ms(self, name: &str, v: Option<f64>) -> Self {
        self.opt(name, v)
    }

    /// A figure by name.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| *v)
    }

    /// The row as one JSON object.
    pub fn json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("phase".into(), self.phase.clone().into());
        for (k, v) in &self.values {
            m.insert(
                k.clone(),
                v.map_or(serde_json::Value::Null, |x| {
                    serde_json::Number::from_f64((x * 1000.0).round() / 1000.0)
                        .map_or(serde_json::Value::Null, serde_json::Value::Number)
                }),
            );
        }
        serde_json::Value::Object(m)
    }
}

/// Every row of a run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// In the order measured.
    pub rows: Vec<Row>,
}

impl Report {
    /// Appends a row.
    pub fn push(&mut self, r: Row) {
        self.rows.push(r);
    }

    /// The first row of `phase`.
    pub fn row(&self, phase: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.phase == phase)
    }

    /// One JSON object per line.
    pub fn json_lines(&self) -> String {
        let mut s = String::new();
        for r in &self.rows {
            let _ = writeln!(s, "{}", r.json());
        }
        s
    }

    /// A table: one block per phase, one figure per line.
    pub fn table(&self) -> String {
        let mut s = String::new();
        for r in &self.rows {
            let _ = writeln!(s, "{}", r.phase);
            for (k, v) in &r.values {
                let shown = v.map_or("-".to_owned(), |x| {
                    if x.fract() == 0.0 && x.abs() < 1e15 {
                        format!("{x:.0}")
                    } else {
                        format!("{x:.2}")
                    }
                });
                let _ = writeln!(s, "  {k:<28} {shown:>14}");
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut l = Latencies::default();
        assert_eq!(l.p(50.0), None);
        for ms in 1..=100 {
            l.add(Duration::from_millis(ms));
        }
        assert_eq!(l.p(50.0), Some(50.0));
        assert_eq!(l.p(99.0), Some(99.0));
        assert_eq!(l.max(), Some(100.0));
    }

    #[test]
    fn rows_render_as_json_and_table() {
        let mut r = Report::default();
        r.push(
            Row::new("post")
                .num("posts_per_sec", 1234.5)
                .opt("cpu", None),
        );
        assert_eq!(
            r.json_lines(),
            "{\"cpu\":null,\"phase\":\"post\",\"posts_per_sec\":1234.5}\n"
        );
        assert!(r.table().contains("posts_per_sec"));
        assert_eq!(
            r.row("post").and_then(|x| x.get("posts_per_sec")),
            Some(1234.5)
        );
    }
}
