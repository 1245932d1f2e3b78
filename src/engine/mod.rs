//! The copy engine: one image (index, manifest or artifact) from a source to any number of
//! targets. Children before the index, blobs before the manifest, the tag last, so a tag at a
//! target never points at something incomplete.
//!
//! Nothing unchanged is transferred: a target whose tag already has the source digest costs
//! HEADs only; a blob already at a target is not sent; a blob already in another repository of
//! the same registry is mounted (found by asking the registry's other repositories of this
//! run when the run has not seen it land, as after `kill -9`: [`peers`]); a blob going to
//! several targets is read from the source once and streamed to all of them ([`tee`]); a
//! blob shared by several images is handled once per target repository ([`BlobLedger`]).
//! One target failing does not stop the others.
//!
//! This file orchestrates one image (its manifest graph, pushes, targets); [`blob`] is the
//! per-blob pipeline (exists → mount → stream); [`foreign`] the non-distributable layers an
//! image lists but need not be copied.

mod blob;
mod climb;
mod foreign;
mod graph;
mod ledger;
mod limits;
mod mounts;
mod peers;
mod referrers;
mod report;
mod signatures;
mod stats;
mod supply_chain;
mod tee;
mod transfers;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::StreamExt;

pub use graph::{Graph, MAX_GRAPH_MANIFESTS, MAX_INDEX_DEPTH, Manifests, Node, Shape, WalkError, walk};
pub use ledger::BlobLedger;
pub use limits::Limits;
pub use peers::MOUNT_PROBES;
pub use referrers::{Referrers, Upstream};
pub use report::{IMAGE_OUTCOMES, ImageReport, Outcome, TargetReport, label};
pub use stats::{Headway, ImageTally, Stats, StatsSnapshot, human_bytes};
pub use transfers::{InFlight, MAX_TRACKED, Tracked, Transfer};

use crate::cancel::Cancel;
use crate::oci::{ArtifactPolicy, BlobDescriptor, Digest, Manifest, ManifestKind, Platform};
use crate::registry::{self, Registry};
use report::report_target;
use stats::Event;

/// Why an image could not be copied to a target.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A registry operation failed.
    #[error(transparent)]
    Registry(#[from] registry::Error),
    /// The source tag or digest does not exist.
    #[error("source {reference} not found")]
    SourceNotFound {
        /// The source reference.
        reference: String,
    },
    /// The run was cancelled before this target was complete; nothing incomplete was tagged.
    #[error("interrupted before completion; the tag was not pushed")]
    Cancelled,
    /// No child of the source index matches the platforms asked for.
    #[error("{reference}: {reason}")]
    Platforms {
        /// The source reference.
        reference: String,
        /// What was asked for and what the index has.
        reason: String,
    },
    /// The image's manifest graph is refused (nested too deep, too large, malformed).
    #[error("{reference}: {shape}")]
    Graph {
        /// The source reference.
        reference: String,
        /// What is wrong with its shape.
        shape: Shape,
    },
    /// `artifacts.require` is set and nothing upstream refers to the image.
    #[error(
        "{reference} has no referrer (signature, SBOM, attestation) matching artifacts.include upstream, and artifacts.require is set"
    )]
    Unsigned {
        /// The source reference.
        reference: String,
    },
    /// `verify` is enforced and no signature over the image's digest verifies; nothing of it
    /// was written.
    #[error("unverified: {reference}: {reason}")]
    Unverified {
        /// The source reference.
        reference: String,
        /// What was found upstream and why each signature did not verify.
        reason: String,
    },
}

impl Error {
    /// Credentials were missing or refused.
    pub fn is_auth(&self) -> bool {
        matches!(self, Error::Registry(e) if e.is_auth())
    }
}

/// Where an image comes from.
pub struct Source<'a, R> {
    /// The registry.
    pub registry: &'a R,
    /// The repository.
    pub repository: &'a str,
    /// Tag or digest, as asked for.
    pub reference: String,
    /// The digest, when discovery already knows it (saves a HEAD).
    pub digest: Option<Digest>,
    /// The media type discovery's HEAD reported; a known single manifest needs no GET on a
    /// warm run with referrers.
    pub media_type: Option<String>,
}

/// Where an image goes.
pub struct Target<'a, R> {
    /// The registry.
    pub registry: &'a R,
    /// The repository.
    pub repository: &'a str,
    /// Tag or digest to push under.
    pub reference: String,
    /// What the target has under `reference`, when discovery already knows it
    /// (`Some(None)`: nothing). `None` makes the engine ask.
    pub current: Option<Option<Digest>>,
}

/// One image to one or more targets.
pub struct ImageJob<'a, R> {
    /// The source.
    pub source: Source<'a, R>,
    /// The targets.
    pub targets: Vec<Target<'a, R>>,
    /// Which referrers (signatures, SBOMs, attestations) come along; `None`: none.
    pub artifacts: Option<&'a ArtifactPolicy>,
    /// Platforms to keep of an index (the index is rebuilt); empty: all, bytes unchanged.
    pub platforms: &'a [Platform],
    /// Signatures that must verify before the image is written; `None`: none checked.
    pub verify: Option<&'a crate::verify::Policy>,
}

/// A target while its image is being copied.
struct Live<'j, R> {
    target: &'j Target<'j, R>,
    /// Blob presence answered in bulk by the target (ECR), instead of one HEAD per blob.
    known: Mutex<HashMap<Digest, bool>>,
    /// The target had nothing under its reference: the image is new there, so its children
    /// are pushed without asking for each first (a `PUT` of a manifest the repository may
    /// already hold costs what the `HEAD` would, and its blobs are checked anyway).
    new_there: std::sync::atomic::AtomicBool,
    stats: Arc<Stats>,
    failure: Mutex<Option<Arc<Error>>>,
    skipped: Mutex<Option<String>>,
}

impl<R> Live<'_, R> {
    fn failed(&self) -> bool {
        self.failure.lock().expect("failure lock poisoned").is_some()
    }

    /// Already has the image under its reference.
    fn is_skipped(&self) -> bool {
        self.skipped.lock().expect("skip lock poisoned").is_some()
    }

    fn fail(&self, error: Arc<Error>) {
        self.failure.lock().expect("failure lock poisoned").get_or_insert(error);
    }
}

/// Copies images; shared by every image of a run so blobs are handled once.
pub struct Engine {
    ledger: BlobLedger,
    manifests: Manifests,
    referrers: Referrers,
    verdicts: signatures::Verdicts,
    limits: Limits,
    peers: peers::Peers,
    stats: Arc<Stats>,
    cancel: Cancel,
    fan_out: usize,
}

impl Engine {
    /// An engine bounded by `limits`; `fan_out` children or blobs of one image run at once.
    pub fn new(limits: Limits, cancel: Cancel, fan_out: usize) -> Self {
        let stats = Arc::new(Stats::default());
        limits.measure(Arc::clone(&stats));
        Engine {
            ledger: BlobLedger::default(),
            manifests: Manifests::default(),
            referrers: Referrers::default(),
            verdicts: signatures::Verdicts::default(),
            limits,
            peers: peers::Peers::default(),
            stats,
            cancel,
            fan_out: fan_out.max(1),
        }
    }

    /// Referrer lookups of this run (tag lists may be handed in from discovery).
    pub fn referrers(&self) -> &Referrers {
        &self.referrers
    }

    /// Totals of the run so far.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Copies one image to every target that does not have it yet.
    pub async fn copy<R: Registry>(&self, job: &ImageJob<'_, R>) -> ImageReport {
        let stats = job.targets.iter().map(|_| Arc::default()).collect();
        self.copy_counted(job, stats).await
    }

    /// [`Engine::copy`], counting each target's blobs and bytes in `stats` (one per target, in
    /// order; targets without one get their own), which the caller keeps: an image abandoned in flight (its future dropped) still
    /// reports what it already sent.
    pub async fn copy_counted<R: Registry>(&self, job: &ImageJob<'_, R>, stats: Vec<Arc<Stats>>) -> ImageReport {
        // In the run's cancel scope: a throttled request waiting for its turn gives up once
        // the run is cancelled (a signal, the Lambda deadline, a watch shutdown).
        self.stats.images.started.fetch_add(job.targets.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let report = self.cancel.scope(self.copy_in_scope(job, stats)).await;
        self.stats.settle_image(&report);
        report
    }

    async fn copy_in_scope<R: Registry>(&self, job: &ImageJob<'_, R>, stats: Vec<Arc<Stats>>) -> ImageReport {
        let started = Instant::now();
        let source = &job.source;
        let lives: Vec<Live<R>> = job
            .targets
            .iter()
            .zip(stats.into_iter().chain(std::iter::repeat_with(Arc::default)))
            .map(|(target, stats)| Live {
                target,
                known: Mutex::default(),
                new_there: std::sync::atomic::AtomicBool::new(false),
                stats,
                failure: Mutex::new(None),
                skipped: Mutex::new(None),
            })
            .collect();
        let digest = match self.source_digest(source).await {
            Ok(digest) => Some(digest),
            Err(error) => {
                let error = Arc::new(error);
                lives.iter().for_each(|live| live.fail(error.clone()));
                None
            }
        };
        let mut extras = supply_chain::Extras::default();
        if let Some(digest) = &digest {
            if job.artifacts.is_some() || !job.platforms.is_empty() {
                extras = self.copy_with_extras(job, digest, &lives).await;
            } else {
                let pending = self.pending_targets(digest, &lives).await;
                if !pending.is_empty() && self.admitted(job, digest, &pending, &mut extras).await {
                    self.copy_top(source, digest, pending).await;
                }
            }
        }
        let duration_ms = started.elapsed().as_millis() as u64;
        let targets: Vec<TargetReport> = lives.iter().map(|live| report_target(live, duration_ms)).collect();
        let left_out = targets.iter().map(|t| t.stats.blobs_foreign_left_out).max().unwrap_or(0);
        if left_out > 0 {
            extras.warnings.push(foreign::left_out_warning(left_out));
        }
        ImageReport {
            source: label(source.registry, source.repository, &source.reference),
            digest,
            target_digest: extras.target_digest,
            signer: extras.signer,
            warnings: extras.warnings,
            targets,
        }
    }

    async fn source_digest<R: Registry>(&self, source: &Source<'_, R>) -> Result<Digest, Error> {
        if let Some(digest) = &source.digest {
            return Ok(digest.clone());
        }
        if let Ok(digest) = source.reference.parse::<Digest>() {
            return Ok(digest);
        }
        let head = source.registry.head_manifest(source.repository, &source.reference).await?;
        head.map(|h| h.digest).ok_or_else(|| Error::SourceNotFound {
            reference: label(source.registry, source.repository, &source.reference),
        })
    }

    /// The targets whose reference does not already have `digest`.
    async fn pending_targets<'j, R: Registry>(
        &self,
        digest: &Digest,
        lives: &'j [Live<'j, R>],
    ) -> Vec<&'j Live<'j, R>> {
        let checks = lives.iter().map(|live| async move {
            let current = match &live.target.current {
                Some(current) => current.clone(),
                None => {
                    match live.target.registry.head_manifest(live.target.repository, &live.target.reference).await {
                        Ok(head) => head.map(|h| h.digest),
                        Err(error) => {
                            live.fail(Arc::new(error.into()));
                            return None;
                        }
                    }
                }
            };
            live.new_there.store(current.is_none(), std::sync::atomic::Ordering::Relaxed);
            if current.as_ref() == Some(digest) {
                *live.skipped.lock().expect("skip lock poisoned") = Some("target already has this digest".into());
                None
            } else {
                Some(live)
            }
        });
        futures_util::future::join_all(checks).await.into_iter().flatten().collect()
    }

    async fn copy_top<R: Registry>(&self, source: &Source<'_, R>, digest: &Digest, pending: Vec<&Live<'_, R>>) {
        if self.cancel.is_cancelled() {
            pending.iter().for_each(|live| live.fail(Arc::new(Error::Cancelled)));
            return;
        }
        if let Some(manifest) = self.fetch_top(source, digest, &pending).await {
            let targets = pending.into_iter().map(|live| (live, live.target.reference.clone())).collect();
            self.copy_manifest(source, &manifest, targets).await;
        }
    }

    /// The source's manifest by digest; a failure fails `lives`.
    async fn fetch_top<R: Registry>(
        &self,
        source: &Source<'_, R>,
        digest: &Digest,
        lives: &[&Live<'_, R>],
    ) -> Option<Manifest> {
        match self.manifests.get(source.registry, source.repository, digest).await {
            Ok(manifest) => Some(manifest),
            Err(error) => {
                let error = Arc::new(if error.is_not_found() {
                    Error::SourceNotFound { reference: label(source.registry, source.repository, &source.reference) }
                } else {
                    error.into()
                });
                lives.iter().for_each(|live| live.fail(error.clone()));
                None
            }
        }
    }

    /// Copies what `manifest` refers to, then pushes it to each target that is still healthy.
    ///
    /// The graph below it is walked first (children de-duplicated, each distinct manifest read
    /// once, nesting capped), so an image refused for its shape pushes nothing; then it is
    /// copied leaves first, each manifest by digest to the targets that lack it, and `manifest`
    /// itself last under each target's reference.
    async fn copy_manifest<R: Registry>(
        &self,
        source: &Source<'_, R>,
        manifest: &Manifest,
        targets: Vec<(&Live<'_, R>, String)>,
    ) {
        let lives: Vec<&Live<R>> = targets.iter().map(|(live, _)| *live).collect();
        let all: Vec<usize> = (0..lives.len()).collect();
        let lives_ref = &lives;
        let read = |digest: Digest| async move {
            Ok::<_, std::convert::Infallible>(self.read_child(source, digest, lives_ref).await)
        };
        let graph = match graph::walk(manifest.clone(), all, self.fan_out, read).await {
            Ok(graph) => graph,
            Err(walk_error) => {
                let error = Arc::new(match walk_error {
                    WalkError::Shape(shape) => {
                        Error::Graph { reference: label(source.registry, source.repository, &source.reference), shape }
                    }
                    WalkError::Read(never) => match never {},
                });
                lives.iter().for_each(|live| live.fail(error.clone()));
                return;
            }
        };
        let top = graph.levels.len() - 1;
        for (height, level) in graph.levels.iter().enumerate() {
            let copies = level.iter().map(|node| {
                let targets: Vec<(&Live<R>, String)> = if height == top {
                    targets.clone()
                } else {
                    node.payload.iter().map(|&n| (lives[n], node.manifest.digest.to_string())).collect()
                };
                self.copy_node(source, &node.manifest, &node.kind, targets)
            });
            futures_util::stream::iter(copies).buffer_unordered(self.fan_out).collect::<Vec<()>>().await;
        }
    }

    /// A child of an index, for the walk: the indexes (into `lives`) of the healthy targets
    /// that lack it by digest, with its manifest read from the source; `None` when none lacks
    /// it, or when reading it failed (those targets then fail; the others go on).
    async fn read_child<R: Registry>(
        &self,
        source: &Source<'_, R>,
        digest: Digest,
        lives: &[&Live<'_, R>],
    ) -> Option<(Manifest, Vec<usize>)> {
        if self.cancel.is_cancelled() {
            lives.iter().for_each(|live| live.fail(Arc::new(Error::Cancelled)));
            return None;
        }
        let checks = lives.iter().enumerate().filter(|(_, live)| !live.failed()).map(|(n, live)| {
            let digest = &digest;
            async move {
                if live.new_there.load(std::sync::atomic::Ordering::Relaxed) {
                    return Some(n);
                }
                match live.target.registry.head_manifest(live.target.repository, digest.as_str()).await {
                    Ok(Some(_)) => None,
                    Ok(None) => Some(n),
                    Err(error) => {
                        live.fail(Arc::new(error.into()));
                        None
                    }
                }
            }
        });
        let needy: Vec<usize> = futures_util::future::join_all(checks).await.into_iter().flatten().collect();
        if needy.is_empty() {
            return None;
        }
        match self.manifests.get(source.registry, source.repository, &digest).await {
            Ok(child) => Some((child, needy)),
            Err(error) => {
                let error = Arc::new(error.into());
                needy.iter().for_each(|&n| lives[n].fail(Arc::clone(&error)));
                None
            }
        }
    }

    /// A manifest by digest (a referrer), with what it refers to, for the targets in `lives`
    /// that lack it.
    async fn copy_child<R: Registry>(&self, source: &Source<'_, R>, digest: &Digest, lives: &[&Live<'_, R>]) {
        if let Some((manifest, needy)) = self.read_child(source, digest.clone(), lives).await {
            let targets = needy.into_iter().map(|n| (lives[n], digest.to_string())).collect();
            self.copy_manifest(source, &manifest, targets).await;
        }
    }

    /// One manifest of a walked graph: its blobs (an image's), then the push under each
    /// target's reference, for the targets still healthy.
    async fn copy_node<R: Registry>(
        &self,
        source: &Source<'_, R>,
        manifest: &Manifest,
        kind: &ManifestKind,
        targets: Vec<(&Live<'_, R>, String)>,
    ) {
        let lives: Vec<&Live<R>> = targets.iter().map(|(live, _)| *live).filter(|live| !live.failed()).collect();
        if lives.is_empty() {
            return;
        }
        if let ManifestKind::Image { blobs, foreign } = kind {
            let held = if foreign.is_empty() {
                Vec::new()
            } else {
                self.foreign_held_at_source(source, foreign, &lives).await
            };
            let blobs: Vec<&BlobDescriptor> = blobs.iter().chain(&held).collect();
            let digests: Vec<Digest> = blobs.iter().map(|b| b.digest.clone()).collect();
            for live in &lives {
                self.peers.want(live.target.registry.name(), live.target.repository, &digests);
            }
            let bulk = lives.iter().map(|live| async {
                if let Some(present) = live.target.registry.blobs_present(live.target.repository, &digests).await {
                    let (registry, repository) = (live.target.registry.name(), live.target.repository);
                    digests
                        .iter()
                        .filter(|d| !present.contains(d))
                        .for_each(|d| self.peers.lacks(registry, repository, d));
                    let mut known = live.known.lock().expect("known lock poisoned");
                    known.extend(digests.iter().map(|d| (d.clone(), present.contains(d))));
                }
            });
            futures_util::future::join_all(bulk).await;
            let mut seen = std::collections::HashSet::new();
            let distinct: Vec<_> = blobs.into_iter().filter(|blob| seen.insert(&blob.digest)).collect();
            // What a live view expects to move; `prepare_blob` takes back what need not.
            let expected = BlobDescriptor::total_size(distinct.iter().copied()).saturating_mul(lives.len() as u64);
            self.stats.expect_bytes(expected);
            futures_util::stream::iter(distinct.into_iter().map(|blob| self.copy_blob(source, blob, &lives)))
                .buffer_unordered(self.fan_out)
                .collect::<Vec<()>>()
                .await;
        }
        let pushes = targets.iter().filter(|(live, _)| !live.failed()).map(|(live, reference)| async move {
            match live.target.registry.put_manifest(live.target.repository, reference, manifest).await {
                Ok(()) => self.record(live, Event::ManifestPushed),
                Err(error) => live.fail(Arc::new(error.into())),
            }
        });
        futures_util::future::join_all(pushes).await;
    }

    fn record<R>(&self, live: &Live<'_, R>, event: Event) {
        live.stats.record(event);
        self.stats.record(event);
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod referrer_tests;

#[cfg(test)]
mod graph_tests;

#[cfg(test)]
mod rerun_tests;

#[cfg(test)]
mod verify_tests;
