//! Execution: every image of a plan that some target lacks goes through the [`Engine`],
//! which copies it to all those targets at once; a stop abandons what is still in flight.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;

use super::report::{self, SyncReport};
use super::{Clients, contained};
use crate::config::Mapping;
use crate::engine::{Engine, ImageJob, ImageReport, Source, Stats, Target};
use crate::plan::{Action, Failure, ImagePlan, Plan, TargetPlan};
use crate::registry::Registry;

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
    // Repositories holding complete images are where a blob a new image needs may already be
    // (left there by an earlier or killed run): the engine may mount from them.
    let up_to_date = plan.mappings.iter().flat_map(|m| &m.images).flat_map(|image| &image.targets);
    for target in up_to_date.filter(|t| t.action == Action::UpToDate) {
        if let Ok(registry) = clients.get(&target.registry) {
            engine.note_up_to_date(registry.name(), &target.repository);
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
    tally_plan(plan, &by_index, clients, engine);
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

    report::assemble(plan, &by_index, &jobs, finished, &counters, clients, started.elapsed().as_millis() as u64)
}

/// Tells the engine's live tally how many image targets the plan has, settling those the
/// engine will never see: up to date (and not checked for referrers), or failed already
/// (planning failed for the image, or the target has no client).
fn tally_plan<R: Registry>(plan: &Plan, by_index: &HashMap<usize, &Mapping>, clients: &Clients<R>, engine: &Engine) {
    let (mut planned, mut up_to_date, mut failed) = (0, 0, 0);
    for mapping_plan in plan.mappings.iter().filter(|p| p.error.is_none()) {
        let mapping = by_index[&mapping_plan.index];
        for image in &mapping_plan.images {
            let to_engine = goes_to_engine(mapping, image);
            for target in &image.targets {
                planned += 1;
                let engine_sees = to_engine
                    && (target.action == Action::Copy || mapping.artifacts.is_some())
                    && clients.get(&target.registry).is_ok();
                match (engine_sees, image.error.is_some(), target.action) {
                    (true, _, _) => {}
                    (false, false, Action::UpToDate) => up_to_date += 1,
                    (false, _, _) => failed += 1,
                }
            }
        }
    }
    engine.stats().plan_images(planned, up_to_date, failed);
}

/// The targets the engine is given for an image, with their clients: those lacking it, and
/// when referrers are on the up-to-date ones too (theirs may be missing). A target without a
/// client is left out; the report's planned entries (`report::planned_report`) cover it.
pub(super) fn engine_targets<'a, R: Registry>(
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
        verify: mapping.verify.as_deref(),
    };
    let report = engine.copy_counted(&job, stats).await;
    report.log();
    report
}

/// Whether the engine sees an image: some target lacks it, or referrers are to be checked
/// (new signatures appear upstream after an image was mirrored).
pub(super) fn goes_to_engine(mapping: &Mapping, image: &ImagePlan) -> bool {
    image.needs_copy() || (mapping.artifacts.is_some() && image.error.is_none() && image.digest.is_some())
}
