//! The SFU's counters and forwarding histogram, read from the server's `/metrics`.

/// Upper bounds (seconds) of the `voice_forward_seconds` buckets, with their counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    /// `voice_packets_received_total`.
    pub received: f64,
    /// `voice_packets_forwarded_total`.
    pub forwarded: f64,
    /// `voice_packets_lost_total`.
    pub lost: f64,
    /// `voice_forward_seconds_sum`.
    pub forward_sum: f64,
    /// `voice_forward_seconds_count`.
    pub forward_count: f64,
    /// `(le, cumulative count)` of `voice_forward_seconds_bucket`, in order.
    pub buckets: Vec<(f64, f64)>,
}

impl Scrape {
    /// Reads the figures out of a Prometheus text page (missing ones stay 0).
    pub fn parse(page: &str) -> Self {
        let mut s = Self::default();
        for line in page.lines() {
            if line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(v) = value.trim().parse::<f64>() else {
                continue;
            };
            let (name, labels) = key.split_once('{').unwrap_or((key, ""));
            match name {
                "voice_packets_received_total" => s.received = v,
                "voice_packets_forwarded_total" => s.forwarded = v,
                "voice_packets_lost_total" => s.lost = v,
                "voice_forward_seconds_sum" => s.forward_sum = v,
                "voice_forward_seconds_count" => s.forward_count = v,
                "voice_forward_seconds_bucket" => {
                    let le = labels
                        .split("le=\"")
                        .nth(1)
                        .and_then(|r| r.split('"').next())
                        .map(|x| {
                            if x == "+Inf" {
                                f64::INFINITY
                            } else {
                                x.parse().unwrap_or(f64::NAN)
                            }
                        });
                    if let Some(le) = le.filter(|l| !l.is_nan()) {
                        s.buckets.push((le, v));
                    }
                }
                _ => {}
            }
        }
        s.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        s
    }

    /// What happened between `self` (earlier) and `later`.
    pub fn delta(&self, later: &Scrape) -> Scrape {
        Scrape {
            received: later.received - self.received,
            forwarded: later.forwarded - self.forwarded,
            lost: later.lost - self.lost,
            forward_sum: later.forward_sum - self.forward_sum,
            forward_count: later.forward_count - self.forward_count,
            buckets: later
                .buckets
                .iter()
                .map(|(le, n)| {
                    let before = self
                        .buckets
                        .iter()
                        .find(|(l, _)| l == le)
                        .map_or(0.0, |(_, x)| *x);
                    (*le, n - before)
                })
                .collect(),
        }
    }

    /// Percent of forwarded packets whose forwarding took at most `le` seconds (a bucket
    /// bound), when any were recorded.
    pub fn pct_within(&self, le: f64) -> Option<f64> {
        let total = self.forward_count;
        let n = self.buckets.iter().find(|(l, _)| *l == le)?.1;
        (total > 0.0).then(|| n / total * 100.0)
    }

    /// The bucket bound (seconds) under which the `q`th percentile lies.
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        let total = self.forward_count;
        if total <= 0.0 {
            return None;
        }
        self.buckets
            .iter()
            .find(|(_, n)| *n >= total * q / 100.0)
            .map(|(le, _)| *le)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "# TYPE voice_packets_forwarded_total counter\n\
        voice_packets_forwarded_total 1000\n\
        voice_packets_received_total 250\n\
        voice_forward_seconds_bucket{le=\"0.0005\"} 240\n\
        voice_forward_seconds_bucket{le=\"0.001\"} 248\n\
        voice_forward_seconds_bucket{le=\"+Inf\"} 250\n\
        voice_forward_seconds_sum 0.05\n\
        voice_forward_seconds_count 250\n";

    #[test]
    fn counters_and_buckets_are_read_and_subtracted() {
        let a = Scrape::parse(PAGE);
        assert_eq!(a.forwarded, 1000.0);
        assert_eq!(a.received, 250.0);
        assert_eq!(a.buckets.len(), 3);
        assert_eq!(a.pct_within(0.0005), Some(96.0));
        assert_eq!(a.quantile_bound(50.0), Some(0.0005));
        assert_eq!(a.quantile_bound(99.0), Some(0.001));
        assert_eq!(a.quantile_bound(100.0), Some(f64::INFINITY));
        let d = Scrape::default().delta(&a);
        assert_eq!(d, a);
        assert_eq!(a.delta(&a).forwarded, 0.0);
        assert_eq!(Scrape::parse("garbage\nvoice_rooms x\n"), Scrape::default());
    }
}
