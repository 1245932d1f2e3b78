//! CloudWatch metrics through the Embedded Metric Format (EMF): each invocation prints JSON
//! documents, one per line, on stdout, the function's log stream, and CloudWatch Logs turns
//! them into metrics. No CloudWatch API call, permission or client is needed, and a metric is
//! never lost to a throttled `PutMetricData`.
//!
//! This module only builds the lines (pure, so the exact shape is unit tested); the handler
//! decides what to count and prints them with [`emit`]. A document carries one value per
//! dimension, so the invocation's totals are one document and each mapping's mirror lag is one
//! document of its own.

use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::sync::SyncReport;

/// The variable naming the CloudWatch namespace.
pub const NAMESPACE_VARIABLE: &str = "OCYNC_METRICS_NAMESPACE";
/// The namespace without [`NAMESPACE_VARIABLE`].
pub const DEFAULT_NAMESPACE: &str = "ocync";

/// Dimension: the function's name, so that two stacks in one account keep their metrics apart.
pub const FUNCTION: &str = "Function";
/// Dimension: a mapping's key (`from -> to`).
pub const MAPPING: &str = "Mapping";

/// Image × target entries copied in the invocation.
pub const IMAGES_SYNCED: &str = "ImagesSynced";
/// Image × target entries already up to date.
pub const IMAGES_SKIPPED: &str = "ImagesSkipped";
/// Image × target entries failed, plus mappings that failed as a whole.
pub const IMAGES_FAILED: &str = "ImagesFailed";
/// Bytes sent to targets.
pub const BYTES_COPIED: &str = "BytesCopied";
/// Continuations sent to the queue.
pub const CONTINUATIONS: &str = "Continuations";
/// Mappings a schedule sent to the queue (or synced inline without one): the fan-out size.
pub const MAPPINGS_SCHEDULED: &str = "MappingsScheduled";
/// Mappings brought fully in sync (no failed image) by the invocation.
pub const MAPPINGS_IN_SYNC: &str = "MappingsInSync";
/// Per mapping in sync: seconds from the start of the run (the schedule) to the mapping being
/// in sync, i.e. how far behind its source the mirror was when last confirmed.
pub const MIRROR_LAG: &str = "MirrorLag";

/// CloudWatch dimension values hold at most 1024 characters.
const MAX_DIMENSION_VALUE: usize = 1024;
/// CloudWatch namespaces hold at most 255 characters.
const MAX_NAMESPACE: usize = 255;

/// A namespace CloudWatch would refuse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "{NAMESPACE_VARIABLE} is `{value}`, expected 1 to 255 of letters, digits and . - _ / # : or space, \
     not starting with AWS/"
)]
pub struct Error {
    /// What the variable holds.
    pub value: String,
}

/// The unit of a metric, as CloudWatch spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A count.
    Count,
    /// Bytes.
    Bytes,
    /// Seconds.
    Seconds,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Bytes => "Bytes",
            Unit::Seconds => "Seconds",
        }
    }
}

/// Where documents go: the namespace and the function they describe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    namespace: String,
    function: String,
}

impl Metrics {
    /// From `OCYNC_METRICS_NAMESPACE` (default `ocync`) and `AWS_LAMBDA_FUNCTION_NAME` (set by
    /// Lambda; `ocync` elsewhere) as `lookup` finds them.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Metrics, Error> {
        let namespace =
            lookup(NAMESPACE_VARIABLE).filter(|v| !v.trim().is_empty()).unwrap_or_else(|| DEFAULT_NAMESPACE.into());
        let function = lookup("AWS_LAMBDA_FUNCTION_NAME").filter(|v| !v.is_empty()).unwrap_or_else(|| "ocync".into());
        Metrics::new(namespace, function)
    }

    /// Metrics in `namespace` for the function `function`.
    pub fn new(namespace: String, function: String) -> Result<Metrics, Error> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || ".-_/#: ".contains(c);
        let valid = !namespace.is_empty()
            && namespace.len() <= MAX_NAMESPACE
            && namespace.chars().all(allowed)
            && !namespace.starts_with("AWS/");
        if !valid {
            return Err(Error { value: crate::text::sanitize(&namespace).into_owned() });
        }
        Ok(Metrics { namespace, function: dimension_value(&function) })
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
}

/// One EMF document: dimension values and metric values, all of one timestamp.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Document {
    dimensions: Vec<(&'static str, String)>,
    values: Vec<(&'static str, Unit, f64)>,
}

impl Document {
    /// A document with the dimension `name` set to `value` (cleaned: control characters
    /// escaped, cut to CloudWatch's 1024 characters).
    pub fn dimension(mut self, name: &'static str, value: &str) -> Self {
        self.dimensions.push((name, dimension_value(value)));
        self
    }

    /// A document that also carries the metric `name`.
    pub fn value(mut self, name: &'static str, unit: Unit, value: f64) -> Self {
        self.values.push((name, unit, value));
        self
    }

    /// The document as one line of JSON: the `_aws` metadata, then each dimension and metric
    /// as a top-level member, as the EMF specification requires.
    pub fn render(&self, namespace: &str, timestamp: SystemTime) -> String {
        let millis = timestamp.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        let dimension_names: Vec<&str> = self.dimensions.iter().map(|(name, _)| *name).collect();
        let definitions: Vec<Value> =
            self.values.iter().map(|(name, unit, _)| json!({ "Name": name, "Unit": unit.name() })).collect();
        let mut root = Map::new();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": millis,
                "CloudWatchMetrics": [{
                    "Namespace": namespace,
                    "Dimensions": [dimension_names],
                    "Metrics": definitions,
                }],
            }),
        );
        for (name, value) in &self.dimensions {
            root.insert((*name).into(), Value::String(value.clone()));
        }
        for (name, _, value) in &self.values {
            root.insert((*name).into(), json!(value));
        }
        Value::Object(root).to_string()
    }
}

/// What one invocation did, in metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Invocation {
    /// Mappings in its reports (logged, not a metric: see [`MAPPINGS_IN_SYNC`]).
    pub mappings: usize,
    /// Totals over its reports.
    pub synced: usize,
    /// See [`IMAGES_SKIPPED`].
    pub skipped: usize,
    /// See [`IMAGES_FAILED`].
    pub failed: usize,
    /// See [`BYTES_COPIED`].
    pub bytes: u64,
    /// See [`CONTINUATIONS`].
    pub continuations: usize,
    /// See [`MAPPINGS_SCHEDULED`]; `None` for a worker.
    pub scheduled: Option<usize>,
    /// Each mapping brought in sync, with its lag (see [`MIRROR_LAG`]).
    pub in_sync: Vec<(String, Duration)>,
}

impl Invocation {
    /// Adds a run's report whose run started at `run_started`, as seen at `now`.
    pub fn add(&mut self, report: &SyncReport, run_started: SystemTime, now: SystemTime) {
        self.mappings += report.totals.mappings;
        self.synced += report.totals.synced;
        self.skipped += report.totals.skipped;
        self.failed += report.totals.failed + report.totals.mappings_failed;
        self.bytes += report.totals.stats.bytes;
        let lag = now.duration_since(run_started).unwrap_or_default();
        for mapping in &report.mappings {
            let failed = mapping.error.is_some()
                || mapping.images.iter().any(|image| matches!(image.outcome, crate::engine::Outcome::Failed { .. }));
            if !failed {
                self.in_sync.push((mapping.key.clone(), lag));
            }
        }
    }

    /// The documents: the totals, then one per mapping in sync.
    pub fn documents(&self, metrics: &Metrics) -> Vec<Document> {
        let count = |n: usize| n as f64;
        let mut totals = Document::default()
            .dimension(FUNCTION, &metrics.function)
            .value(IMAGES_SYNCED, Unit::Count, count(self.synced))
            .value(IMAGES_SKIPPED, Unit::Count, count(self.skipped))
            .value(IMAGES_FAILED, Unit::Count, count(self.failed))
            .value(BYTES_COPIED, Unit::Bytes, self.bytes as f64)
            .value(CONTINUATIONS, Unit::Count, count(self.continuations))
            .value(MAPPINGS_IN_SYNC, Unit::Count, count(self.in_sync.len()));
        if let Some(scheduled) = self.scheduled {
            totals = totals.value(MAPPINGS_SCHEDULED, Unit::Count, count(scheduled));
        }
        let lags = self.in_sync.iter().map(|(mapping, lag)| {
            Document::default().dimension(FUNCTION, &metrics.function).dimension(MAPPING, mapping).value(
                MIRROR_LAG,
                Unit::Seconds,
                lag.as_secs_f64(),
            )
        });
        std::iter::once(totals).chain(lags).collect()
    }
}

/// Prints `documents` as lines on stdout, each with one write so that no other output splits
/// it. A failed write loses metrics, not the invocation: it is logged.
pub fn emit(metrics: &Metrics, documents: &[Document], timestamp: SystemTime) {
    let mut text = String::new();
    for document in documents {
        text += &document.render(&metrics.namespace, timestamp);
        text.push('\n');
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        tracing::warn!(%error, "metrics not written");
    }
}

/// A dimension value CloudWatch accepts and a reader can trust: control characters escaped,
/// at most 1024 characters, never empty.
fn dimension_value(value: &str) -> String {
    let clean: String = crate::text::sanitize(value).chars().take(MAX_DIMENSION_VALUE).collect();
    if clean.trim().is_empty() { "-".into() } else { clean }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(millis)
    }

    fn metrics() -> Metrics {
        Metrics::new("ocync".into(), "mirror-fn".into()).unwrap()
    }

    #[test]
    fn a_document_has_the_exact_emf_shape() {
        let line = Document::default()
            .dimension(FUNCTION, "mirror-fn")
            .value(IMAGES_SYNCED, Unit::Count, 3.0)
            .value(BYTES_COPIED, Unit::Bytes, 1024.0)
            .render("ocync", at(1_700_000_000_123));
        assert!(!line.contains('\n'), "one line: {line}");
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            parsed,
            json!({
                "_aws": {
                    "Timestamp": 1_700_000_000_123u64,
                    "CloudWatchMetrics": [{
                        "Namespace": "ocync",
                        "Dimensions": [["Function"]],
                        "Metrics": [{"Name": "ImagesSynced", "Unit": "Count"}, {"Name": "BytesCopied", "Unit": "Bytes"}],
                    }],
                },
                "Function": "mirror-fn",
                "ImagesSynced": 3.0,
                "BytesCopied": 1024.0,
            })
        );
    }

    #[test]
    fn an_invocation_gives_its_totals_and_one_lag_document_per_mapping_in_sync() {
        let invocation = Invocation {
            mappings: 2,
            synced: 2,
            skipped: 1,
            failed: 1,
            bytes: 500,
            continuations: 1,
            scheduled: None,
            in_sync: vec![("a -> b".into(), Duration::from_secs(90))],
        };
        let lines: Vec<Value> = invocation
            .documents(&metrics())
            .iter()
            .map(|d| serde_json::from_str(&d.render("ocync", at(5))).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        let totals = &lines[0];
        let names: Vec<&str> = totals["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [IMAGES_SYNCED, IMAGES_SKIPPED, IMAGES_FAILED, BYTES_COPIED, CONTINUATIONS, MAPPINGS_IN_SYNC],
            "a worker sends no fan-out size"
        );
        assert_eq!(
            (&totals["ImagesSynced"], &totals["ImagesFailed"], &totals["BytesCopied"], &totals["MappingsInSync"]),
            (&json!(2.0), &json!(1.0), &json!(500.0), &json!(1.0))
        );
        let lag = &lines[1];
        assert_eq!(lag["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["Function", "Mapping"]]));
        assert_eq!(lag["_aws"]["CloudWatchMetrics"][0]["Metrics"], json!([{"Name": "MirrorLag", "Unit": "Seconds"}]));
        assert_eq!(
            (&lag["Function"], &lag["Mapping"], &lag["MirrorLag"]),
            (&json!("mirror-fn"), &json!("a -> b"), &json!(90.0))
        );
    }

    #[test]
    fn only_mappings_without_a_failure_are_in_sync_with_the_age_of_their_run() {
        use crate::engine::Outcome;
        use crate::sync::{ImageResult, MappingReport};
        let image = |outcome: Outcome| ImageResult {
            source: "up/a:v1".into(),
            target: "down/a:v1".into(),
            digest: None,
            target_digest: None,
            warnings: Vec::new(),
            signer: None,
            outcome,
            stats: Default::default(),
            duration_ms: 0,
        };
        let mapping = |index: usize, key: &str, images, error| MappingReport {
            index,
            key: key.into(),
            error,
            tags_kept: 1,
            tags_dropped: 0,
            invalid_tags: 0,
            images,
        };
        let report = SyncReport::new(
            vec![
                mapping(
                    0,
                    "ok -> ok",
                    vec![image(Outcome::Synced), image(Outcome::Skipped { reason: "same".into() })],
                    None,
                ),
                mapping(1, "bad -> bad", vec![image(Outcome::Failed { error: "refused".into(), auth: false })], None),
                mapping(2, "gone -> gone", Vec::new(), Some(crate::plan::Failure::new("no such repository"))),
            ],
            0,
        );
        let mut invocation = Invocation::default();
        invocation.add(&report, at(1_000), at(61_000));
        assert_eq!(invocation.in_sync, [("ok -> ok".to_string(), Duration::from_secs(60))]);
        assert_eq!(
            (invocation.mappings, invocation.synced, invocation.skipped, invocation.failed),
            (3, 1, 1, 2),
            "a mapping failed as a whole counts as one failure"
        );
    }

    #[test]
    fn a_schedule_sends_its_fan_out_size() {
        let invocation = Invocation { scheduled: Some(7), ..Invocation::default() };
        let documents = invocation.documents(&metrics());
        assert_eq!(documents.len(), 1, "nothing synced, so no lag");
        let totals: Value = serde_json::from_str(&documents[0].render("ocync", at(0))).unwrap();
        assert_eq!(totals[MAPPINGS_SCHEDULED], json!(7.0));
    }

    #[test]
    fn the_namespace_defaults_to_ocync_and_follows_the_variable() {
        let lookup = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
        };
        let default = Metrics::from_lookup(lookup(&[])).unwrap();
        assert_eq!((default.namespace(), default.function.as_str()), ("ocync", "ocync"));
        let set =
            Metrics::from_lookup(lookup(&[(NAMESPACE_VARIABLE, "Mirrors/prod"), ("AWS_LAMBDA_FUNCTION_NAME", "f")]))
                .unwrap();
        assert_eq!((set.namespace(), set.function.as_str()), ("Mirrors/prod", "f"));
        for bad in ["AWS/Lambda", "ocync\u{1b}[2J", "a{b}"] {
            let error = Metrics::from_lookup(move |name: &str| (name == NAMESPACE_VARIABLE).then(|| bad.to_string()))
                .unwrap_err()
                .to_string();
            assert!(error.starts_with("OCYNC_METRICS_NAMESPACE is `"), "{error}");
            assert!(!error.contains('\u{1b}'), "the value is shown escaped: {error}");
        }
    }

    #[test]
    fn dimension_values_are_escaped_and_bounded() {
        let document = Document::default().dimension(MAPPING, &format!("a\nb{}", "x".repeat(2000)));
        let line: Value = serde_json::from_str(&document.render("ocync", at(0))).unwrap();
        let value = line[MAPPING].as_str().unwrap();
        assert!(value.starts_with("a\\x0ab"), "{value}");
        assert_eq!(value.chars().count(), MAX_DIMENSION_VALUE);
        assert_eq!(Document::default().dimension(MAPPING, " ").dimensions[0].1, "-");
    }
}
