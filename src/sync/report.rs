//! The report of a sync: per mapping and per image and target, with totals and the run's
//! overall status (which the CLI turns into an exit code), and its assembly from the plan and
//! what the engine reported.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use super::Clients;
use super::execute::{INTERRUPTED, engine_targets, goes_to_engine};
use crate::config::Mapping;
use crate::engine::{ImageReport, Outcome, Stats, StatsSnapshot, human_bytes, label};
use crate::oci::Digest;
use crate::plan::{Action, Failure, ImagePlan, MappingPlan, Plan};
use crate::registry::Registry;
use crate::registry::pacing::Throttling;

/// One image at one target.
#[derive(Debug, Clone, Serialize)]
pub struct ImageResult {
    /// `registry/repository:tag` at the source.
    pub source: String,
    /// `registry/repository:tag` at the target.
    pub target: String,
    /// The source digest.
    pub digest: Option<Digest>,
    /// The digest pushed, when it is not the source's (a platform subset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_digest: Option<Digest>,
    /// Who signed the source digest, when `verify` checked it before copying.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// Notes for the user (a rebuilt index is not covered by the source's signatures).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// synced, skipped or failed, with the reason.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Blobs and bytes.
    pub stats: StatsSnapshot,
    /// How long it took.
    pub duration_ms: u64,
}

/// One mapping.
#[derive(Debug, Clone, Serialize)]
pub struct MappingReport {
    /// Position in the config.
    pub index: usize,
    /// `from -> to`.
    pub key: String,
    /// Why the mapping failed as a whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
    /// Tags the filter kept.
    pub tags_kept: usize,
    /// Tags the filter dropped.
    pub tags_dropped: usize,
    /// Names the source listed that are not valid OCI tags (dropped; the run exits 1).
    pub invalid_tags: usize,
    /// Per image and target.
    pub images: Vec<ImageResult>,
}

/// Counts over the run.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Totals {
    /// Mappings in the run.
    pub mappings: usize,
    /// Mappings that failed as a whole.
    pub mappings_failed: usize,
    /// Image × target entries synced.
    pub synced: usize,
    /// … already up to date.
    pub skipped: usize,
    /// … failed.
    pub failed: usize,
    /// Names sources listed that are not valid OCI tags, over every mapping.
    pub invalid_tags: usize,
    /// Blob and byte counts summed.
    #[serde(flatten)]
    pub stats: StatsSnapshot,
}

/// How the run went as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Nothing failed.
    Success,
    /// Some things failed, others did not.
    Partial,
    /// Everything failed.
    Failed,
    /// Everything failed, on authentication.
    AuthFailed,
}

impl RunStatus {
    /// The status of a run with `failures` and `successes`; `all_failures_auth` says whether
    /// every failure was an authentication failure.
    pub fn from_counts(failures: usize, successes: usize, all_failures_auth: bool) -> Self {
        match (failures, successes) {
            (0, _) => RunStatus::Success,
            (_, 0) if all_failures_auth => RunStatus::AuthFailed,
            (_, 0) => RunStatus::Failed,
            _ => RunStatus::Partial,
        }
    }

    /// What a plan foretells: a mapping or image error is a failure, an image it can copy or
    /// finds up to date a success.
    pub fn of_plan(plan: &Plan) -> Self {
        let failures = plan
            .mappings
            .iter()
            .flat_map(|mapping| mapping.error.iter().chain(mapping.images.iter().flat_map(ImagePlan::failures)));
        let (mut count, mut all_auth) = (0, true);
        for failure in failures {
            count += 1;
            all_auth &= failure.auth;
        }
        let successes = plan.mappings.iter().flat_map(|m| &m.images).filter(|i| i.can_succeed()).count();
        let invalid_tags = plan.mappings.iter().map(|m| m.invalid_tags).sum();
        RunStatus::from_counts(count, successes, all_auth).with_invalid_tags(invalid_tags)
    }

    /// A run that met invalid tags is not a success even if all else went well: it exits 1,
    /// so a source listing names that are paths does not go unnoticed.
    pub fn with_invalid_tags(self, invalid_tags: usize) -> Self {
        match self {
            RunStatus::Success if invalid_tags > 0 => RunStatus::Partial,
            other => other,
        }
    }
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    /// Overall status.
    pub status: RunStatus,
    /// Totals.
    pub totals: Totals,
    /// Per mapping.
    pub mappings: Vec<MappingReport>,
    /// Wall time of the execution phase.
    pub duration_ms: u64,
    /// Throttling answers and time spent waiting them out, per registry and pacing group
    /// (only groups that were throttled).
    pub throttling: Vec<Throttling>,
    /// A shutdown (signal, deadline, watch stop) came while the run was going: what had not
    /// started never did, and what was still in flight when it ran out was abandoned; those
    /// images failed in this report and the next run finishes them.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

impl SyncReport {
    /// Totals and status from the mapping reports.
    pub fn new(mappings: Vec<MappingReport>, duration_ms: u64) -> Self {
        let mut totals = Totals { mappings: mappings.len(), ..Totals::default() };
        let mut all_failures_auth = true;
        for mapping in &mappings {
            totals.invalid_tags += mapping.invalid_tags;
            if let Some(error) = &mapping.error {
                totals.mappings_failed += 1;
                all_failures_auth &= error.auth;
            }
            for image in &mapping.images {
                totals.stats += image.stats;
                match &image.outcome {
                    Outcome::Synced => totals.synced += 1,
                    Outcome::Skipped { .. } => totals.skipped += 1,
                    Outcome::Failed { auth, .. } => {
                        totals.failed += 1;
                        all_failures_auth &= *auth;
                    }
                }
            }
        }
        let failures = totals.failed + totals.mappings_failed;
        let successes = totals.synced + totals.skipped;
        let status =
            RunStatus::from_counts(failures, successes, all_failures_auth).with_invalid_tags(totals.invalid_tags);
        SyncReport { status, totals, mappings, duration_ms, throttling: Vec::new(), interrupted: false }
    }

    /// The report with the run's throttling; a run that spent long waiting out throttling
    /// says so with the figures, since the same work may soon not fit its schedule or deadline.
    pub fn with_throttling(mut self, throttling: Vec<Throttling>) -> Self {
        let waited: u64 = throttling.iter().map(|t| t.waited_ms).sum();
        if waited > LONG_THROTTLING.as_millis() as u64 {
            for t in &throttling {
                tracing::warn!(registry = %t.registry, group = %t.group, throttled = t.throttled, waited_seconds = t.waited_ms / 1000, "finished after long throttling");
            }
            tracing::warn!(
                waited_seconds = waited / 1000,
                run_seconds = self.duration_ms / 1000,
                "the run finished only after long throttling: lower the concurrency or spread the schedule"
            );
        }
        self.throttling = throttling;
        self
    }

    /// A few lines for people: one per mapping, then the totals.
    pub fn summary(&self) -> String {
        let mut lines = Vec::new();
        for mapping in &self.mappings {
            let count = |wanted: fn(&Outcome) -> bool| mapping.images.iter().filter(|i| wanted(&i.outcome)).count();
            match &mapping.error {
                Some(error) => lines.push(format!("{}: FAILED: {error}", mapping.key)),
                None => lines.push(format!(
                    "{}: {} tags kept ({} dropped{}); {} synced, {} up to date, {} failed",
                    mapping.key,
                    mapping.tags_kept,
                    mapping.tags_dropped,
                    invalid_note(mapping.invalid_tags),
                    count(|o| matches!(o, Outcome::Synced)),
                    count(|o| matches!(o, Outcome::Skipped { .. })),
                    count(|o| matches!(o, Outcome::Failed { .. })),
                )),
            }
            for image in &mapping.images {
                if let Outcome::Failed { error, .. } = &image.outcome {
                    lines.push(format!("  failed {} -> {}: {error}", image.source, image.target));
                }
                for warning in &image.warnings {
                    lines.push(format!("  note {} -> {}: {warning}", image.source, image.target));
                }
                if let (Some(signer), Outcome::Synced) = (&image.signer, &image.outcome) {
                    lines.push(format!("  verified {} -> {}: signed by {signer}", image.source, image.target));
                }
            }
        }
        let t = &self.totals;
        lines.push(format!(
            "total: {} mappings ({} failed{}); images {} synced, {} up to date, {} failed; blobs {} copied, {} skipped, {} mounted; {} referrers copied; {} in {:.1}s",
            t.mappings,
            t.mappings_failed,
            invalid_note(t.invalid_tags),
            t.synced,
            t.skipped,
            t.failed,
            t.stats.blobs_copied,
            t.stats.blobs_skipped,
            t.stats.blobs_mounted,
            t.stats.referrers_copied,
            human_bytes(t.stats.bytes),
            self.duration_ms as f64 / 1000.0
        ));
        if t.stats.blobs_mount_declined > 0 {
            lines.push(format!(
                "mounts declined: {} (uploaded instead; on ECR enable the BLOB_MOUNTING account setting)",
                t.stats.blobs_mount_declined
            ));
        }
        for t in &self.throttling {
            lines.push(format!(
                "throttled: {} {}: {} answers, waited {:.1}s",
                t.registry,
                t.group,
                t.throttled,
                t.waited_ms as f64 / 1000.0
            ));
        }
        lines.join("\n")
    }
}

/// Waiting out throttling for longer than this (summed over requests) in one run is warned of.
pub const LONG_THROTTLING: std::time::Duration = std::time::Duration::from_secs(30);

/// `, N invalid tags` when there were any.
fn invalid_note(invalid_tags: usize) -> String {
    if invalid_tags == 0 { String::new() } else { format!(", {invalid_tags} invalid tags") }
}

/// The report of an executed plan: what the plan decided, then per engine job its targets'
/// outcomes (`finished[n]` is job `n`'s; `None`: abandoned in flight, failed as
/// [`INTERRUPTED`]; `Some(Err)`: its task panicked).
pub(super) fn assemble<R: Registry>(
    plan: &Plan,
    by_index: &HashMap<usize, &Mapping>,
    jobs: &[(&Mapping, &ImagePlan)],
    finished: Vec<Option<Result<ImageReport, Failure>>>,
    counters: &[Vec<Arc<Stats>>],
    clients: &Clients<R>,
    duration_ms: u64,
) -> SyncReport {
    let mut reports: Vec<MappingReport> =
        plan.mappings.iter().map(|p| planned_report(p, by_index[&p.index], clients)).collect();
    for (((mapping, image), done), stats) in jobs.iter().zip(finished).zip(counters) {
        let report =
            reports.iter_mut().find(|r| r.index == mapping.index).expect("every job comes from a planned mapping");
        let failure = match done {
            Some(Ok(done)) => {
                report.images.extend(done.targets.into_iter().map(|target| ImageResult {
                    source: done.source.clone(),
                    target: target.target,
                    digest: done.digest.clone(),
                    target_digest: done.target_digest.clone(),
                    signer: done.signer.clone(),
                    warnings: done.warnings.clone(),
                    outcome: target.outcome,
                    stats: target.stats,
                    duration_ms: target.duration_ms,
                }));
                continue;
            }
            // The image's task panicked: every target it was going to fails with the panic.
            Some(Err(failure)) => failure,
            None => Failure::new(INTERRUPTED),
        };
        let source = clients.get(&mapping.source).expect("planned mappings have a source client");
        report.images.extend(engine_targets(mapping, image, clients).zip(stats).map(|((registry, target), stats)| {
            let mut entry = decided(
                label(source, &mapping.from, &image.tag),
                label(registry, &target.repository, &image.tag),
                image,
                failed(&failure),
            );
            entry.stats = stats.snapshot();
            entry
        }));
    }
    SyncReport::new(reports, duration_ms).with_throttling(clients.throttling())
}

/// The report entries a plan already decides: up-to-date targets, failed images, targets
/// whose client could not be built, and the mapping's own error.
fn planned_report<R: Registry>(plan: &MappingPlan, mapping: &Mapping, clients: &Clients<R>) -> MappingReport {
    // Labels use the registry's host, as the engine's do, falling back to the config name.
    let host = |name: &str| clients.get(name).map_or_else(|_| name.to_string(), |r| r.name().to_string());
    let mut images = Vec::new();
    for image in &plan.images {
        for target in &image.targets {
            let entry = |outcome| {
                let source = format!("{}/{}:{}", host(&plan.source), plan.from, image.tag);
                let target = format!("{}/{}:{}", host(&target.registry), target.repository, image.tag);
                decided(source, target, image, outcome)
            };
            if let Some(error) = &image.error {
                images.push(entry(failed(error)));
            } else if let Err(error) = clients.get(&target.registry) {
                images.push(entry(failed(&error)));
            } else if target.action == Action::UpToDate && !goes_to_engine(mapping, image) {
                images.push(entry(Outcome::Skipped { reason: "target already has this digest".into() }));
            }
        }
    }
    MappingReport {
        index: plan.index,
        key: plan.key.clone(),
        error: plan.error.clone(),
        tags_kept: plan.kept.len(),
        tags_dropped: plan.dropped.len(),
        invalid_tags: plan.invalid_tags,
        images,
    }
}

/// A report entry decided without the engine (by the plan, or by abandoning the image).
fn decided(source: String, target: String, image: &ImagePlan, outcome: Outcome) -> ImageResult {
    ImageResult {
        source,
        target,
        digest: image.digest.clone(),
        target_digest: None,
        signer: None,
        warnings: Vec::new(),
        outcome,
        stats: StatsSnapshot::default(),
        duration_ms: 0,
    }
}

/// The outcome of a failure, keeping its classification.
fn failed(failure: &Failure) -> Outcome {
    Outcome::Failed { error: failure.message.clone(), auth: failure.auth }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(outcome: Outcome) -> ImageResult {
        ImageResult {
            source: "s".into(),
            target: "t".into(),
            digest: None,
            target_digest: None,
            signer: None,
            warnings: Vec::new(),
            outcome,
            stats: StatsSnapshot::default(),
            duration_ms: 0,
        }
    }

    fn mapping(error: Option<Failure>, images: Vec<ImageResult>) -> MappingReport {
        MappingReport { index: 0, key: "a -> b".into(), error, tags_kept: 1, tags_dropped: 0, invalid_tags: 0, images }
    }

    fn failed(auth: bool) -> Outcome {
        Outcome::Failed { error: "x".into(), auth }
    }

    #[test]
    fn status_follows_the_mix_of_outcomes() {
        let status = |mappings| SyncReport::new(mappings, 0).status;
        assert_eq!(status(vec![mapping(None, vec![image(Outcome::Synced)])]), RunStatus::Success);
        assert_eq!(status(vec![mapping(None, vec![image(Outcome::Synced), image(failed(false))])]), RunStatus::Partial);
        assert_eq!(
            status(vec![mapping(None, vec![image(Outcome::Synced)]), mapping(Some(Failure::new("boom")), vec![])]),
            RunStatus::Partial
        );
        assert_eq!(status(vec![mapping(None, vec![image(failed(false))])]), RunStatus::Failed);
        assert_eq!(status(vec![mapping(None, vec![image(failed(true)), image(failed(true))])]), RunStatus::AuthFailed);
        assert_eq!(status(vec![mapping(Some(Failure::new("boom")), vec![])]), RunStatus::Failed);
        assert_eq!(status(vec![]), RunStatus::Success);
    }

    #[test]
    fn a_run_whose_mappings_all_fail_on_authentication_is_auth_failed() {
        let status = |mappings| SyncReport::new(mappings, 0).status;
        let refused = || Some(Failure { message: "cannot list tags: r denied access to a (401)".into(), auth: true });
        assert_eq!(status(vec![mapping(refused(), vec![]), mapping(refused(), vec![])]), RunStatus::AuthFailed);
        assert_eq!(
            status(vec![mapping(refused(), vec![]), mapping(None, vec![image(failed(true))])]),
            RunStatus::AuthFailed
        );
        assert_eq!(
            status(vec![mapping(refused(), vec![]), mapping(Some(Failure::new("boom")), vec![])]),
            RunStatus::Failed
        );
        assert_eq!(
            status(vec![mapping(refused(), vec![]), mapping(None, vec![image(failed(false))])]),
            RunStatus::Failed
        );
        assert_eq!(
            status(vec![mapping(refused(), vec![]), mapping(None, vec![image(Outcome::Synced)])]),
            RunStatus::Partial
        );
    }

    #[test]
    fn invalid_tags_are_counted_per_mapping_and_in_total_and_the_run_is_not_a_success() {
        let with_invalid = MappingReport { invalid_tags: 2, ..mapping(None, vec![image(Outcome::Synced)]) };
        let report = SyncReport::new(vec![with_invalid, mapping(None, vec![image(Outcome::Synced)])], 0);
        assert_eq!(report.status, RunStatus::Partial, "exit 1, not 0");
        assert_eq!(report.totals.invalid_tags, 2);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["totals"]["invalid_tags"], 2);
        assert_eq!(json["mappings"][0]["invalid_tags"], 2);
        assert_eq!(json["mappings"][1]["invalid_tags"], 0);
        let summary = report.summary();
        assert!(summary.contains("(0 dropped, 2 invalid tags)"), "{summary}");
        assert!(summary.contains("(0 failed, 2 invalid tags)"), "{summary}");
        // Failures keep their own status.
        let failed = MappingReport { invalid_tags: 1, ..mapping(None, vec![image(failed(true))]) };
        assert_eq!(SyncReport::new(vec![failed], 0).status, RunStatus::AuthFailed);
    }

    #[test]
    fn a_mapping_error_serialises_as_its_message() {
        let report = SyncReport::new(vec![mapping(Some(Failure { message: "refused".into(), auth: true }), vec![])], 0);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["status"], "auth_failed");
        assert_eq!(json["mappings"][0]["error"], "refused");
    }

    #[test]
    fn throttling_is_reported_per_registry_and_group_in_json_and_text() {
        let throttling = vec![Throttling {
            registry: "127.0.0.1:5000".into(),
            group: "registry".into(),
            throttled: 12,
            waited_ms: 31_500,
        }];
        let report =
            SyncReport::new(vec![mapping(None, vec![image(Outcome::Synced)])], 40_000).with_throttling(throttling);
        assert_eq!(report.status, RunStatus::Success, "throttling that was waited out is no failure");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["throttling"][0]["registry"], "127.0.0.1:5000");
        assert_eq!(json["throttling"][0]["group"], "registry");
        assert_eq!(json["throttling"][0]["throttled"], 12);
        assert_eq!(json["throttling"][0]["waited_ms"], 31_500);
        let summary = report.summary();
        assert!(summary.contains("throttled: 127.0.0.1:5000 registry: 12 answers, waited 31.5s"), "{summary}");
        let quiet = SyncReport::new(vec![], 0).with_throttling(Vec::new());
        assert_eq!(serde_json::to_value(&quiet).unwrap()["throttling"], serde_json::json!([]));
        assert!(!quiet.summary().contains("throttled"));
    }
}
