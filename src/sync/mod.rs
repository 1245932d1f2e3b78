//! `ocync sync`: discover (list and filter tags, HEAD source and targets), plan, execute.
//!
//! Discovery is concurrent and costs one tag list per mapping plus one HEAD per kept tag at
//! the source and at each target, so a run where nothing changed stops there. Execution hands
//! every image that some target lacks to the [`Engine`], which copies it to all those targets
//! at once. One mapping's failure is recorded in the report and never stops the others.

mod clients;
mod contain;
mod discover;
mod report;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;

pub use clients::{ClientCache, Clients};
pub use contain::contained;
pub use discover::discover;
pub use report::{ImageResult, MappingReport, RunStatus, SyncReport, Totals};

use crate::cancel::Cancel;
use crate::config::{Config, Mapping};
use crate::engine::{Engine, ImageJob, ImageReport, Limits, Outcome, Source, Stats, StatsSnapshot, Target, label};
use crate::plan::{self as planning, Action, Failure, ImagePlan, MappingPlan, Plan, TargetPlan};
use crate::registry::Registry;

/// An engine for one run of `config`: `global.max_concurrent_transfers` transfers at once,
/// and each registry's `max_concurrent` against it.
pub fn engine(config: &Config, cancel: Cancel) -> Engine {
    let transfers = config.global.max_concurrent_transfers;
    let per_registry = config.registries.values().filter_map(|r| r.max_concurrent.map(|n| (r.host.clone(), n)));
    Engine::new(Limits::new(transfers, per_registry), cancel, transfers)
}

/// Plans every mapping (concurrently); `estimate_bytes` adds manifest GETs to size the work.
pub async fn plan<R: Registry>(mappings: &[&Mapping], clients: &Clients<R>, estimate_bytes: bool) -> Plan {
    let (referrers, manifests) = (crate::engine::Referrers::default(), crate::engine::Manifests::default());
    let run = discover::Run { referrers: &referrers, manifests: &manifests };
    let plans = futures_util::stream::iter(mappings.iter().map(|mapping| async move {
        // A panic fails this mapping's plan only (see `contain`).
        contained("discovering tags", discover(mapping, clients, estimate_bytes, run))
            .await
            .unwrap_or_else(|failure| planning::failed_mapping(mapping, failure))
    }))
    .buffered(DISCOVERY_CONCURRENCY)
    .collect()
    .await;
    Plan { mappings: plans }
}

/// Mappings discovered at once (each also HEADs its tags concurrently).
const DISCOVERY_CONCURRENCY: usize = 16;

/// Runs a plan: every image some target lacks goes through the engine.
pub async fn execute<R: Registry>(
    plan: &Plan,
    mappings: &[&Mapping],
    clients: &Clients<R>,
    engine: &Engine,
    images_at_once: usize,
) -> SyncReport {
    execute_until(plan, mappings, clients, engine, images_at_once, std::future::pending()).await
}

/// What an image abandoned in flight reports at each of its targets.
pub const INTERRUPTED: &str =
    "interrupted: still in flight when the shutdown grace period ran out; nothing incomplete was tagged";

/// [`execute`], abandoned when `stop` resolves (a shutdown grace period running out): the
/// report still covers every image, those still in flight failed as [`INTERRUPTED`] with the
/// blobs they had already sent in their stats.
/// Abandoning is safe because a tag is pushed only once everything it refers to is confirmed
/// at the target, so an abandoned image leaves blobs behind but never a tag on missing blobs.
pub async fn execute_until<R: Registry>(
    plan: &Plan,
    mappings: &[&Mapping],
    clients: &Clients<R>,
    engine: &Engine,
    images_at_once: usize,
    stop: impl Future<Output = ()>,
) -> SyncReport {
    let started = Instant::now();
    let by_index: HashMap<usize, &Mapping> = mappings.iter().map(|m| (m.index, *m)).collect();
    // Discovery listed every source tag; the fallback tag schema needs the same list.
    for mapping_plan in plan.mappings.iter().filter(|p| p.error.is_none() && by_index[&p.index].artifacts.is_some()) {
        if let Ok(source) = clients.get(&mapping_plan.source) {
            let listed = mapping_plan.kept.iter().cloned().chain(mapping_plan.dropped.iter().map(|d| d.tag.clone()));
            engine.referrers().known_tags(source, &mapping_plan.from, listed);
        }
    }
    let jobs: Vec<(&Mapping, &ImagePlan)> = plan
        .mappings
        .iter()
        .flat_map(|mapping_plan| {
            let mapping = by_index[&mapping_plan.index];
            mapping_plan
                .images
                .iter()
                .filter(|image| {
                    goes_to_engine(mapping, image) && engine_targets(mapping, image, clients).next().is_some()
                })
                .map(move |image| (mapping, image))
        })
        .collect();
    let mut finished: Vec<Option<Result<ImageReport, Failure>>> = vec![None; jobs.len()];
    // Each target's counters belong to this function, not to the image's future, so an image
    // abandoned at `stop` still reports the blobs it already sent (what a rerun need not send).
    let counters: Vec<Vec<Arc<Stats>>> = jobs
        .iter()
        .map(|(mapping, image)| engine_targets(mapping, image, clients).map(|_| Arc::default()).collect())
        .collect();
    {
        let mut copies = futures_util::stream::iter(jobs.iter().zip(&counters).enumerate().map(
            |(n, ((mapping, image), stats))| async move {
                let copy = copy_image(mapping, image, clients, engine, stats.clone());
                (n, contained("copying the image", copy).await)
            },
        ))
        .buffer_unordered(images_at_once.max(1));
        let drain = async {
            while let Some((n, report)) = copies.next().await {
                finished[n] = Some(report);
            }
        };
        // `stop` first: once it has fired, nothing more is driven, even work that is ready.
        tokio::select! {
            biased;
            () = stop => {}
            () = drain => {}
        }
        // Leaving this block drops the copies still in flight.
    }

    let mut reports: Vec<MappingReport> =
        plan.mappings.iter().map(|p| planned_report(p, by_index[&p.index], clients)).collect();
    for (((mapping, image), done), stats) in jobs.iter().zip(finished).zip(&counters) {
        let report =
            reports.iter_mut().find(|r| r.index == mapping.index).expect("every job comes from a planned mapping");
        let failure = match done {
            Some(Ok(done)) => {
                report.images.extend(done.targets.into_iter().map(|target| ImageResult {
                    source: done.source.clone(),
                    target: target.target,
                    digest: done.digest.clone(),
                    target_digest: done.target_digest.clone(),
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
    SyncReport::new(reports, started.elapsed().as_millis() as u64).with_throttling(clients.throttling())
}

/// The targets the engine is given for an image, with their clients: those lacking it, and
/// when referrers are on the up-to-date ones too (theirs may be missing). A target without a
/// client is left out; [`planned_report`] reports it.
fn engine_targets<'a, R: Registry>(
    mapping: &'a Mapping,
    image: &'a ImagePlan,
    clients: &'a Clients<R>,
) -> impl Iterator<Item = (&'a R, &'a TargetPlan)> {
    image
        .targets
        .iter()
        .filter(|t| t.action == Action::Copy || mapping.artifacts.is_some())
        .filter_map(|t| clients.get(&t.registry).ok().map(|registry| (registry, t)))
}

async fn copy_image<R: Registry>(
    mapping: &Mapping,
    image: &ImagePlan,
    clients: &Clients<R>,
    engine: &Engine,
    stats: Vec<Arc<Stats>>,
) -> ImageReport {
    let source = clients.get(&mapping.source).expect("planned mappings have a source client");
    let targets = engine_targets(mapping, image, clients)
        .map(|(registry, t)| Target {
            registry,
            repository: &t.repository,
            reference: image.tag.clone(),
            current: t.current.clone(),
        })
        .collect();
    let job = ImageJob {
        source: Source {
            registry: source,
            repository: &mapping.from,
            reference: image.tag.clone(),
            digest: image.digest.clone(),
            media_type: image.media_type.clone(),
        },
        targets,
        artifacts: mapping.artifacts.as_ref(),
        platforms: &mapping.platforms,
    };
    let report = engine.copy_counted(&job, stats).await;
    for warning in &report.warnings {
        tracing::warn!(source = %report.source, %warning, "copied with a change");
    }
    for target in &report.targets {
        match &target.outcome {
            Outcome::Synced => {
                tracing::info!(source = %report.source, target = %target.target, digest = %report.digest.as_ref().map(ToString::to_string).unwrap_or_default(), blobs = target.stats.blobs_copied, bytes = target.stats.bytes, "image synced")
            }
            Outcome::Failed { error, .. } => {
                tracing::error!(source = %report.source, target = %target.target, %error, "image failed")
            }
            Outcome::Skipped { .. } => {}
        }
    }
    report
}

/// Whether the engine sees an image: some target lacks it, or referrers are to be checked
/// (new signatures appear upstream after an image was mirrored).
fn goes_to_engine(mapping: &Mapping, image: &ImagePlan) -> bool {
    image.needs_copy() || (mapping.artifacts.is_some() && image.error.is_none() && image.digest.is_some())
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
mod tests;
