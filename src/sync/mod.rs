//! `ocync sync`: discover (list and filter tags, HEAD source and targets), plan, execute.
//!
//! Discovery is concurrent and costs one tag list per mapping plus one HEAD per kept tag at
//! the source and at each target, so a run where nothing changed stops there. Execution hands
//! every image that some target lacks to the [`Engine`], which copies it to all those targets
//! at once. One mapping's failure is recorded in the report and never stops the others.

mod clients;
mod discover;
mod report;

use std::collections::HashMap;
use std::time::Instant;

use futures_util::StreamExt;

pub use clients::{ClientCache, Clients};
pub use discover::discover;
pub use report::{ImageResult, MappingReport, RunStatus, SyncReport, Totals};

use crate::cancel::Cancel;
use crate::config::{Config, Mapping};
use crate::engine::{Engine, ImageJob, Limits, Outcome, Source, StatsSnapshot, Target};
use crate::plan::{Action, MappingPlan, Plan};
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
    let plans = futures_util::stream::iter(mappings.iter().map(|mapping| discover(mapping, clients, estimate_bytes)))
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
    let started = Instant::now();
    let by_index: HashMap<usize, &Mapping> = mappings.iter().map(|m| (m.index, *m)).collect();
    // Discovery listed every source tag; the fallback tag schema needs the same list.
    for mapping_plan in plan.mappings.iter().filter(|p| p.error.is_none() && by_index[&p.index].artifacts.is_some()) {
        if let Ok(source) = clients.get(&mapping_plan.source) {
            let listed = mapping_plan.kept.iter().cloned().chain(mapping_plan.dropped.iter().map(|d| d.tag.clone()));
            engine.referrers().known_tags(source, &mapping_plan.from, listed);
        }
    }
    let jobs = plan.mappings.iter().flat_map(|mapping_plan| {
        let mapping = by_index[&mapping_plan.index];
        mapping_plan.images.iter().filter(|image| goes_to_engine(mapping, image)).map(move |image| (mapping, image))
    });
    let copied: Vec<(usize, crate::engine::ImageReport)> =
        futures_util::stream::iter(jobs.map(|(mapping, image)| async move {
            let report = copy_image(mapping, image, clients, engine).await;
            (mapping.index, report)
        }))
        .buffer_unordered(images_at_once.max(1))
        .collect()
        .await;

    let mut reports: Vec<MappingReport> =
        plan.mappings.iter().map(|p| planned_report(p, by_index[&p.index], clients)).collect();
    for (index, image) in copied {
        let report = reports.iter_mut().find(|r| r.index == index).expect("every job comes from a planned mapping");
        for target in image.targets {
            report.images.push(ImageResult {
                source: image.source.clone(),
                target: target.target,
                digest: image.digest.clone(),
                target_digest: image.target_digest.clone(),
                warnings: image.warnings.clone(),
                outcome: target.outcome,
                stats: target.stats,
                duration_ms: target.duration_ms,
            });
        }
    }
    SyncReport::new(reports, started.elapsed().as_millis() as u64)
}

async fn copy_image<R: Registry>(
    mapping: &Mapping,
    image: &crate::plan::ImagePlan,
    clients: &Clients<R>,
    engine: &Engine,
) -> crate::engine::ImageReport {
    let source = clients.get(&mapping.source).expect("planned mappings have a source client");
    let targets = image
        .targets
        .iter()
        // Targets already up to date go too when referrers are on: theirs may be missing.
        .filter(|t| t.action == Action::Copy || mapping.artifacts.is_some())
        .filter_map(|t| clients.get(&t.registry).ok().map(|registry| (registry, t)))
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
    let report = engine.copy(&job).await;
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
fn goes_to_engine(mapping: &Mapping, image: &crate::plan::ImagePlan) -> bool {
    image.needs_copy() || (mapping.artifacts.is_some() && image.error.is_none() && image.digest.is_some())
}

/// The report entries a plan already decides: up-to-date targets, failed images, and the
/// mapping's own error.
fn planned_report<R: Registry>(plan: &MappingPlan, mapping: &Mapping, clients: &Clients<R>) -> MappingReport {
    // Labels use the registry's host, as the engine's do, falling back to the config name.
    let host = |name: &str| clients.get(name).map_or_else(|_| name.to_string(), |r| r.name().to_string());
    let mut images = Vec::new();
    for image in &plan.images {
        for target in &image.targets {
            let entry = |outcome| ImageResult {
                source: format!("{}/{}:{}", host(&plan.source), plan.from, image.tag),
                target: format!("{}/{}:{}", host(&target.registry), target.repository, image.tag),
                digest: image.digest.clone(),
                target_digest: None,
                warnings: Vec::new(),
                outcome,
                stats: StatsSnapshot::default(),
                duration_ms: 0,
            };
            if let Some(error) = &image.error {
                images.push(entry(Outcome::Failed { error: error.clone(), auth: false }));
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
        images,
    }
}

#[cfg(test)]
mod tests;
