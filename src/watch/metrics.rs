//! What watch mode counts, and its Prometheus text rendering.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::registry::HttpRegistry;
use crate::registry::pacing::Throttling;
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
    /// Throttling answers and seconds spent waiting them out, by registry and pacing group.
    pub throttling: BTreeMap<(String, String), (u64, f64)>,
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
        // A full cycle reports every configured mapping: forget the ones removed from the config.
        self.last_success.retain(|key, _| report.mappings.iter().any(|m| &m.key == key));
        for mapping in &report.mappings {
            let healthy = mapping.error.is_none()
                && mapping.images.iter().all(|i| !matches!(i.outcome, crate::engine::Outcome::Failed { .. }));
            if healthy {
                self.last_success.insert(mapping.key.clone(), now);
            }
        }
    }

    /// Takes the request and throttle counts of the clients this cycle used. The snapshot
    /// replaces the previous one: a registry no longer in the config (or no longer used by any
    /// mapping) has no client, so its series disappear instead of repeating their last values
    /// forever, as Prometheus expects of a target that stopped exporting them.
    pub fn record_clients(&mut self, clients: &Clients<HttpRegistry>) {
        self.record_registries(clients.all().map(|(_, client)| {
            (crate::registry::Registry::name(client).to_string(), client.request_counts(), client.throttles())
        }));
        self.record_throttling(clients.all().flat_map(|(_, client)| client.throttling_counts()));
    }

    /// Takes the throttling of each pacing group of the clients this cycle used (a snapshot,
    /// replacing the previous one like the request counts).
    fn record_throttling(&mut self, snapshot: impl IntoIterator<Item = Throttling>) {
        self.throttling.clear();
        for t in snapshot {
            let entry = self.throttling.entry((t.registry, t.group)).or_default();
            entry.0 += t.throttled;
            entry.1 += t.waited_ms as f64 / 1000.0;
        }
    }

    /// [`Metrics::record_clients`] from plain values: `(host, requests by status, throttles)`
    /// per client. Clients for the same host (two config entries naming it) add up.
    fn record_registries(&mut self, snapshot: impl IntoIterator<Item = (String, BTreeMap<String, u64>, u64)>) {
        self.requests.clear();
        self.throttles.clear();
        for (host, requests, throttles) in snapshot {
            for (status, count) in requests {
                *self.requests.entry((host.clone(), status)).or_default() += count;
            }
            *self.throttles.entry(host).or_default() += throttles;
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
        let by_group = |registry: &str, group: &str, value: String| {
            format!("{{registry=\"{}\",group=\"{}\"}} {value}", escape(registry), escape(group))
        };
        family(
            &mut out,
            "ocync_throttled_requests_total",
            "counter",
            "Throttling answers by registry and pacing group (registry x action).",
            self.throttling.iter().map(|((registry, group), (n, _))| by_group(registry, group, n.to_string())),
        );
        family(
            &mut out,
            "ocync_throttle_wait_seconds_total",
            "counter",
            "Seconds requests spent waiting for their turn after throttling, summed over requests.",
            self.throttling.iter().map(|((registry, group), (_, s))| by_group(registry, group, format!("{s:.3}"))),
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

    fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(status, n)| (status.to_string(), *n)).collect()
    }

    #[test]
    fn a_registry_removed_from_the_config_stops_being_exported() {
        let mut metrics = Metrics::default();
        metrics.record_registries([
            ("ghcr.io".to_string(), counts(&[("200", 5)]), 0),
            ("old.example".to_string(), counts(&[("200", 3), ("429", 2)]), 2),
        ]);
        assert!(metrics.render().contains("ocync_registry_throttled_total{registry=\"old.example\"} 2\n"));

        // The next cycle's config no longer has old.example; ghcr.io kept counting.
        metrics.record_registries([("ghcr.io".to_string(), counts(&[("200", 9)]), 1)]);
        let text = metrics.render();
        assert!(!text.contains("old.example"), "{text}");
        assert!(text.contains("ocync_registry_requests_total{registry=\"ghcr.io\",status=\"200\"} 9\n"), "{text}");
        assert!(text.contains("ocync_registry_throttled_total{registry=\"ghcr.io\"} 1\n"), "{text}");
    }

    #[test]
    fn throttling_is_exported_per_registry_and_pacing_group() {
        let mut metrics = Metrics::default();
        let throttling = |group: &str, throttled, waited_ms| Throttling {
            registry: "1.dkr.ecr.us-east-1.amazonaws.com".into(),
            group: group.into(),
            throttled,
            waited_ms,
        };
        metrics.record_throttling([throttling("put-image", 7, 12_500), throttling("read", 1, 0)]);
        let text = metrics.render();
        let put = "{registry=\"1.dkr.ecr.us-east-1.amazonaws.com\",group=\"put-image\"}";
        assert!(text.contains(&format!("ocync_throttled_requests_total{put} 7\n")), "{text}");
        assert!(text.contains(&format!("ocync_throttle_wait_seconds_total{put} 12.500\n")), "{text}");
        assert!(text.contains("group=\"read\"} 1\n"), "{text}");
        metrics.record_throttling([]);
        assert!(!metrics.render().contains("put-image"), "a snapshot replaces the last one");
    }

    #[test]
    fn clients_for_the_same_host_add_up() {
        let mut metrics = Metrics::default();
        metrics.record_registries([
            ("ghcr.io".to_string(), counts(&[("200", 4), ("404", 1)]), 1),
            ("ghcr.io".to_string(), counts(&[("200", 6)]), 2),
        ]);
        assert_eq!(metrics.requests[&("ghcr.io".to_string(), "200".to_string())], 10);
        assert_eq!(metrics.requests[&("ghcr.io".to_string(), "404".to_string())], 1);
        assert_eq!(metrics.throttles["ghcr.io"], 3);
    }

    #[tokio::test]
    async fn record_clients_exports_only_the_clients_of_this_cycle() {
        use std::sync::Arc;

        use crate::registry::RegistrySettings;
        let client =
            |host: &str| (host.to_string(), Ok(Arc::new(HttpRegistry::new(RegistrySettings::new(host)).unwrap())));
        let mut metrics = Metrics::default();
        metrics.record_clients(&Clients::new([client("127.0.0.1:9"), client("127.0.0.1:10")]));
        assert_eq!(metrics.throttles.keys().collect::<Vec<_>>(), ["127.0.0.1:10", "127.0.0.1:9"]);
        metrics.record_clients(&Clients::new([client("127.0.0.1:9")]));
        assert_eq!(metrics.throttles.keys().collect::<Vec<_>>(), ["127.0.0.1:9"]);
    }

    #[test]
    fn a_mapping_removed_from_the_config_loses_its_freshness_gauge() {
        use crate::sync::MappingReport;
        let mapping = |key: &str| MappingReport {
            index: 0,
            key: key.to_string(),
            error: None,
            tags_kept: 0,
            tags_dropped: 0,
            invalid_tags: 0,
            images: Vec::new(),
        };
        let mut metrics = Metrics::default();
        metrics.record_cycle(&SyncReport::new(vec![mapping("a -> a"), mapping("b -> b")], 1), 1.0, 100.0);
        assert_eq!(metrics.last_success.len(), 2);
        metrics.record_cycle(&SyncReport::new(vec![mapping("a -> a")], 1), 1.0, 200.0);
        assert_eq!(metrics.last_success, [("a -> a".to_string(), 200.0)].into());
        assert!(!metrics.render().contains("b -> b"));
    }
}
