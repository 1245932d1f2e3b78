//! What watch mode counts, and its Prometheus text rendering.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::registry::HttpRegistry;
use crate::sync::{Clients, SyncReport};

/// Counters since the process started, and per-mapping freshness.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Cycles completed.
    pub cycles: u64,
    /// Image × target results by status (`synced`, `skipped`, `failed`).
    pub images: BTreeMap<&'static str, u64>,
    /// Bytes sent to targets.
    pub bytes: u64,
    /// Blobs by what happened (`copied`, `skipped`, `mounted`).
    pub blobs: BTreeMap<&'static str, u64>,
    /// Config reloads that failed (the last good config was kept).
    pub config_errors: u64,
    /// Seconds since the epoch of each mapping's last fully successful sync.
    pub last_success: BTreeMap<String, f64>,
    /// Duration of the last cycle, in seconds.
    pub last_cycle_seconds: f64,
    /// Requests by registry and status, and throttling answers by registry: a snapshot taken
    /// after each cycle from the long-lived clients.
    pub requests: BTreeMap<(String, String), u64>,
    /// Throttling answers (429, or 503 with Retry-After) by registry.
    pub throttles: BTreeMap<String, u64>,
}

impl Metrics {
    /// Adds a cycle's report; `now` is the time the cycle ended (seconds since the epoch).
    pub fn record_cycle(&mut self, report: &SyncReport, seconds: f64, now: f64) {
        self.cycles += 1;
        self.last_cycle_seconds = seconds;
        let totals = &report.totals;
        *self.images.entry("synced").or_default() += totals.synced as u64;
        *self.images.entry("skipped").or_default() += totals.skipped as u64;
        *self.images.entry("failed").or_default() += totals.failed as u64;
        *self.blobs.entry("copied").or_default() += totals.stats.blobs_copied;
        *self.blobs.entry("skipped").or_default() += totals.stats.blobs_skipped;
        *self.blobs.entry("mounted").or_default() += totals.stats.blobs_mounted;
        self.bytes += totals.stats.bytes;
        for mapping in &report.mappings {
            let healthy = mapping.error.is_none()
                && mapping.images.iter().all(|i| !matches!(i.outcome, crate::engine::Outcome::Failed { .. }));
            if healthy {
                self.last_success.insert(mapping.key.clone(), now);
            }
        }
    }

    /// Takes the request and throttle counts of the clients.
    pub fn record_clients(&mut self, clients: &Clients<HttpRegistry>) {
        for (_, client) in clients.all() {
            let host = crate::registry::Registry::name(client).to_string();
            for (status, count) in client.request_counts() {
                self.requests.insert((host.clone(), status), count);
            }
            self.throttles.insert(host, client.throttles());
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let labelled = |label: &str, value: &str, n: String| format!("{{{label}=\"{}\"}} {n}", escape(value));
        family(&mut out, "ocync_cycles_total", "counter", "Sync cycles completed.", [format!(" {}", self.cycles)]);
        family(
            &mut out,
            "ocync_images_total",
            "counter",
            "Images per target by outcome.",
            self.images.iter().map(|(status, n)| labelled("status", status, n.to_string())),
        );
        family(
            &mut out,
            "ocync_blobs_total",
            "counter",
            "Blobs by what happened to them.",
            self.blobs.iter().map(|(result, n)| labelled("result", result, n.to_string())),
        );
        family(&mut out, "ocync_bytes_total", "counter", "Bytes sent to targets.", [format!(" {}", self.bytes)]);
        family(
            &mut out,
            "ocync_config_errors_total",
            "counter",
            "Config reloads that failed; the last good config stayed in use.",
            [format!(" {}", self.config_errors)],
        );
        family(
            &mut out,
            "ocync_registry_requests_total",
            "counter",
            "Registry requests by registry and HTTP status.",
            self.requests.iter().map(|((registry, status), n)| {
                format!("{{registry=\"{}\",status=\"{status}\"}} {n}", escape(registry))
            }),
        );
        family(
            &mut out,
            "ocync_registry_throttled_total",
            "counter",
            "Throttling answers (429, 503 with Retry-After) by registry.",
            self.throttles.iter().map(|(registry, n)| labelled("registry", registry, n.to_string())),
        );
        family(
            &mut out,
            "ocync_mapping_last_success_timestamp_seconds",
            "gauge",
            "When each mapping last synced without a failure.",
            self.last_success.iter().map(|(mapping, at)| labelled("mapping", mapping, format!("{at:.0}"))),
        );
        family(
            &mut out,
            "ocync_cycle_duration_seconds",
            "gauge",
            "Duration of the last cycle.",
            [format!(" {:.3}", self.last_cycle_seconds)],
        );
        out
    }
}

/// One metric family: its `# HELP` and `# TYPE` lines, then its samples (labels and value,
/// appended to the name).
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: impl IntoIterator<Item = String>) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for sample in samples {
        let _ = writeln!(out, "{name}{sample}");
    }
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_families_with_their_samples_and_escapes_labels() {
        let mut metrics = Metrics { cycles: 2, bytes: 10, ..Default::default() };
        metrics.images.insert("synced", 3);
        metrics.last_success.insert("a -> \"b\"".into(), 1_700_000_000.0);
        metrics.requests.insert(("ghcr.io".into(), "200".into()), 7);
        let text = metrics.render();
        assert!(text.contains("# TYPE ocync_cycles_total counter\nocync_cycles_total 2\n"), "{text}");
        assert!(text.contains("ocync_images_total{status=\"synced\"} 3\n"), "{text}");
        assert!(text.contains("ocync_registry_requests_total{registry=\"ghcr.io\",status=\"200\"} 7\n"), "{text}");
        assert!(
            text.contains("ocync_mapping_last_success_timestamp_seconds{mapping=\"a -> \\\"b\\\"\"} 1700000000\n"),
            "{text}"
        );
    }
}
