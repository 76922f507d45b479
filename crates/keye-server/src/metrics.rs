//! Counters, gauges and histograms, rendered in the Prometheus text format at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

const TIME_TO_FIRST_TOKEN_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0,
];
const TIME_PER_TOKEN_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5,
];
const REQUEST_DURATION_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0,
];

/// A cumulative histogram with fixed upper bounds.
struct Histogram {
    bounds: &'static [f64],
    state: Mutex<HistogramState>,
}

struct HistogramState {
    /// Per bucket, not cumulative; the last entry is `+Inf`.
    counts: Vec<u64>,
    sum: f64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            state: Mutex::new(HistogramState {
                counts: vec![0; bounds.len() + 1],
                sum: 0.0,
            }),
        }
    }

    fn observe(&self, seconds: f64) {
        let bucket = self.bounds.partition_point(|&bound| bound < seconds);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.counts[bucket] += 1;
        state.sum += seconds;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&state.counts) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += state.counts[self.bounds.len()];
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum {}", state.sum);
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// Everything `/metrics` reports. Shared by the HTTP layer and the batching engine.
pub(crate) struct Metrics {
    requests_by_status: Mutex<BTreeMap<u16, u64>>,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    time_to_first_token: Histogram,
    time_per_output_token: Histogram,
    request_duration: Histogram,
    /// Accepted requests not yet running (being prepared or waiting for a batch slot).
    pub queued: AtomicUsize,
    pub running: AtomicUsize,
    pub kv_tokens_reserved: AtomicUsize,
    kv_token_budget: usize,
    max_running: usize,
}

impl Metrics {
    pub fn new(kv_token_budget: usize, max_running: usize) -> Self {
        Self {
            requests_by_status: Mutex::new(BTreeMap::new()),
            prompt_tokens: AtomicU64::new(0),
            completion_tokens: AtomicU64::new(0),
            time_to_first_token: Histogram::new(TIME_TO_FIRST_TOKEN_BUCKETS),
            time_per_output_token: Histogram::new(TIME_PER_TOKEN_BUCKETS),
            request_duration: Histogram::new(REQUEST_DURATION_BUCKETS),
            queued: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            kv_tokens_reserved: AtomicUsize::new(0),
            kv_token_budget,
            max_running,
        }
    }

    pub fn record_status(&self, status: u16) {
        let mut counts = self
            .requests_by_status
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *counts.entry(status).or_default() += 1;
    }

    pub fn record_tokens(&self, prompt: usize, completion: usize) {
        self.prompt_tokens
            .fetch_add(prompt as u64, Ordering::Relaxed);
        self.completion_tokens
            .fetch_add(completion as u64, Ordering::Relaxed);
    }

    pub fn observe_first_token(&self, latency: Duration) {
        self.time_to_first_token.observe(latency.as_secs_f64());
    }

    pub fn observe_token_interval(&self, interval: Duration) {
        self.time_per_output_token.observe(interval.as_secs_f64());
    }

    pub fn observe_request_duration(&self, duration: Duration) {
        self.request_duration.observe(duration.as_secs_f64());
    }

    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str(
            "# HELP keye_requests_total HTTP requests answered, by status code.\n\
             # TYPE keye_requests_total counter\n",
        );
        for (status, count) in self
            .requests_by_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(out, "keye_requests_total{{status=\"{status}\"}} {count}");
        }
        let counters = [
            (
                "keye_prompt_tokens_total",
                "Prompt tokens of completed requests.",
                self.prompt_tokens.load(Ordering::Relaxed),
            ),
            (
                "keye_completion_tokens_total",
                "Generated tokens of completed requests.",
                self.completion_tokens.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let gauges = [
            (
                "keye_queue_depth",
                "Accepted requests waiting for a batch slot.",
                self.queued.load(Ordering::Relaxed),
            ),
            (
                "keye_running_sequences",
                "Sequences in the decoding batch.",
                self.running.load(Ordering::Relaxed),
            ),
            (
                "keye_max_running_sequences",
                "Batch slots (--max-running).",
                self.max_running,
            ),
            (
                "keye_kv_tokens_reserved",
                "KV-cache tokens reserved by running sequences.",
                self.kv_tokens_reserved.load(Ordering::Relaxed),
            ),
            (
                "keye_kv_tokens_budget",
                "KV-cache tokens running sequences may reserve together.",
                self.kv_token_budget,
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        self.time_to_first_token.render(
            &mut out,
            "keye_time_to_first_token_seconds",
            "From a request's arrival to its first generated token.",
        );
        self.time_per_output_token.render(
            &mut out,
            "keye_time_per_output_token_seconds",
            "Interval between consecutive generated tokens of a request.",
        );
        self.request_duration.render(
            &mut out,
            "keye_request_duration_seconds",
            "From a request's arrival to its last token.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let metrics = Metrics::new(100, 4);
        for ms in [5, 30, 30, 700, 100_000] {
            metrics.observe_first_token(Duration::from_millis(ms));
        }
        metrics.record_status(200);
        metrics.record_status(200);
        metrics.record_status(503);
        metrics.record_tokens(10, 3);
        let text = metrics.render();
        for line in [
            "keye_time_to_first_token_seconds_bucket{le=\"0.01\"} 1",
            "keye_time_to_first_token_seconds_bucket{le=\"0.05\"} 3",
            "keye_time_to_first_token_seconds_bucket{le=\"1\"} 4",
            "keye_time_to_first_token_seconds_bucket{le=\"80\"} 4",
            "keye_time_to_first_token_seconds_bucket{le=\"+Inf\"} 5",
            "keye_time_to_first_token_seconds_count 5",
            "keye_requests_total{status=\"200\"} 2",
            "keye_requests_total{status=\"503\"} 1",
            "keye_prompt_tokens_total 10",
            "keye_completion_tokens_total 3",
            "keye_kv_tokens_budget 100",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        let sum_line = text
            .lines()
            .find(|l| l.starts_with("keye_time_to_first_token_seconds_sum"))
            .unwrap();
        let sum: f64 = sum_line.split(' ').nth(1).unwrap().parse().unwrap();
        assert!((sum - 100.765).abs() < 1e-9, "{sum}");
    }
}
