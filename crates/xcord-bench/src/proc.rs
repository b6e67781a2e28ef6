//! The server's resident memory and CPU time, read from `/proc/<pid>`.

use std::time::Instant;

/// One reading.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Resident set, KiB.
    pub rss_kib: u64,
    /// User + system CPU time, in clock ticks (USER_HZ = 100 on Linux).
    pub cpu_ticks: u64,
    /// Threads.
    pub threads: u64,
    /// When it was taken.
    pub at: Instant,
}

/// Reads samples of one process (or nothing, without a pid).
#[derive(Debug, Clone, Copy)]
pub struct Sampler {
    pid: Option<u32>,
}

impl Sampler {
    /// A sampler of `pid`.
    pub fn new(pid: Option<u32>) -> Self {
        Self { pid }
    }

    /// The current reading, if the process can be read.
    pub fn sample(&self) -> Option<Sample> {
        let pid = self.pid?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may contain spaces) start after ") ".
        let rest = stat.rsplit_once(") ")?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
        let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        Some(Sample {
            rss_kib: field("VmRSS:")?,
            cpu_ticks: ticks,
            threads: field("Threads:").unwrap_or(0),
            at: Instant::now(),
        })
    }
}

/// CPU time of each thread of `pid`, in clock ticks, by thread id (empty when unreadable).
pub fn thread_ticks(pid: Option<u32>) -> Vec<(u32, u64)> {
    let Some(pid) = pid else { return Vec::new() };
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    // Bounded by the process's thread count.
    for entry in dir.flatten() {
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
        if let (Some(u), Some(s)) = (field(11), field(12)) {
            out.push((tid, u + s));
        }
    }
    out
}

/// The busiest thread between two [`thread_ticks`] readings `secs` apart, in percent of
/// one core.
pub fn busiest_thread_pct(a: &[(u32, u64)], b: &[(u32, u64)], secs: f64) -> Option<f64> {
    if secs <= 0.0 {
        return None;
    }
    b.iter()
        .map(|(tid, tb)| {
            let ta = a.iter().find(|(t, _)| t == tid).map_or(0, |(_, x)| *x);
            tb.saturating_sub(ta)
        })
        .max()
        .map(|ticks| ticks as f64 / 100.0 / secs * 100.0)
}

/// CPU use between two samples, in percent of one core.
pub fn cpu_pct(a: Option<Sample>, b: Option<Sample>) -> Option<f64> {
    let (a, b) = (a?, b?);
    let secs = b.at.duration_since(a.at).as_secs_f64();
    (secs > 0.0).then(|| (b.cpu_ticks.saturating_sub(a.cpu_ticks)) as f64 / 100.0 / secs * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process() {
        let s = Sampler::new(Some(std::process::id()))
            .sample()
            .expect("own /proc");
        assert!(s.rss_kib > 0 && s.threads > 0);
        assert!(Sampler::new(None).sample().is_none());
        let threads = thread_ticks(Some(std::process::id()));
        assert!(!threads.is_empty());
        assert_eq!(busiest_thread_pct(&[(1, 0)], &[(1, 100)], 2.0), Some(50.0));
    }
}
