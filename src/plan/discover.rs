//! Discovery, the I/O half of planning: for each mapping list the source's tags, filter them,
//! HEAD each kept tag at the source and at every target. No manifest or blob is read unless
//! bytes are estimated. Listed names that are not valid OCI tags are dropped and counted
//! before anything else. Mappings are discovered concurrently; a panic in one fails only its
//! own plan.

use std::collections::HashSet;

use futures_util::StreamExt;

use super::{Failure, ImagePlan, MappingPlan, Plan, PlannedReferrer};
use crate::config::Mapping;
use crate::engine::{Manifests, Referrers, Shape, WalkError};
use crate::oci::{ArtifactPolicy, BlobDescriptor, Digest, ManifestKind};
use crate::plan;
use crate::registry::Registry;
use crate::sync::{Clients, contained};
use crate::verify::{Mode, Verdict};

/// Mappings discovered at once (each also HEADs its tags concurrently).
const DISCOVERY_CONCURRENCY: usize = 16;

/// Plans every mapping (concurrently); `estimate_bytes` adds manifest GETs to size the work.
pub async fn discover<R: Registry>(mappings: &[&Mapping], clients: &Clients<R>, estimate_bytes: bool) -> Plan {
    let (referrers, manifests) = (Referrers::default(), Manifests::default());
    let shared = Shared { referrers: &referrers, manifests: &manifests };
    let plans = futures_util::stream::iter(mappings.iter().map(|mapping| async move {
        // A panic fails this mapping's plan only (see `contain`).
        contained("discovering tags", discover_mapping(mapping, clients, estimate_bytes, shared))
            .await
            .unwrap_or_else(|failure| plan::failed_mapping(mapping, failure))
    }))
    .buffered(DISCOVERY_CONCURRENCY)
    .collect()
    .await;
    Plan::new(plans)
}

/// Tags HEADed at once within one mapping.
const HEAD_CONCURRENCY: usize = 16;

/// What the mappings of one plan share.
#[derive(Clone, Copy)]
pub struct Shared<'a> {
    /// Referrer lookups (dry runs list referrers; one API probe per registry and run, and the
    /// tag list discovery made serves the fallback tag schema).
    pub referrers: &'a Referrers,
    /// Manifest reads (dry runs read manifests to size images): each distinct one read once.
    pub manifests: &'a Manifests,
}

/// Plans one mapping; problems become the plan's error or an image's error, never a panic.
pub async fn discover_mapping<R: Registry>(
    mapping: &Mapping,
    clients: &Clients<R>,
    estimate_bytes: bool,
    run: Shared<'_>,
) -> MappingPlan {
    let Shared { referrers, manifests } = run;
    let source = match clients.get(&mapping.source) {
        Ok(source) => source,
        Err(error) => return plan::failed_mapping(mapping, error),
    };
    let (listed, invalid_tags) = match source.list_tags(&mapping.from).await {
        Ok(tags) => plan::valid_tags(source.name(), &mapping.from, tags),
        Err(error) => return plan::failed_mapping(mapping, Failure::registry("cannot list tags", &error)),
    };
    if estimate_bytes && mapping.artifacts.is_some() {
        referrers.known_tags(source, &mapping.from, listed.iter().cloned());
    }
    let selection = match plan::select_tags(mapping, &listed) {
        Ok(selection) => selection,
        Err(error) => return plan::failed_mapping(mapping, Failure::new(error)),
    };
    let images = futures_util::stream::iter(selection.kept.iter().map(|tag| async move {
        let source_head = source.head_manifest(&mapping.from, tag).await.map_err(|e| Failure::from(&e));
        let media_type = source_head.as_ref().ok().and_then(|head| head.as_ref()).map(|h| h.media_type.clone());
        let source_digest = source_head.map(|head| head.map(|h| h.digest));
        let targets = futures_util::future::join_all(mapping.targets.iter().map(|name| async move {
            let repository = mapping.repository_at(name);
            let current = match clients.get(name) {
                Ok(target) => target.head_manifest(repository, tag).await.ok().map(|head| head.map(|h| h.digest)),
                Err(_) => None,
            };
            (name.clone(), repository.to_string(), current)
        }))
        .await;
        let mut image = plan::plan_image(tag, source_digest, targets);
        plan::fail_unreachable_targets(&mut image, |name| clients.get(name).err());
        image.media_type = media_type.filter(|t| !t.is_empty());
        if estimate_bytes
            && image.needs_copy()
            && let Some(digest) = &image.digest
        {
            match image_bytes(source, &mapping.from, digest, manifests).await {
                Ok(blobs) => image.set_blobs(blobs),
                Err(Some(shape)) => image.error = Some(Failure::new(format!("would fail: {shape}"))),
                // A manifest that cannot be read leaves the size unknown; the copy will say why.
                Err(None) => {}
            }
        }
        if estimate_bytes && let Some(policy) = &mapping.verify {
            planned_verification(&mut image, source, &mapping.from, policy).await;
        }
        if estimate_bytes && let (Some(policy), Some(digest)) = (&mapping.artifacts, &image.digest) {
            match planned_referrers(source, &mapping.from, digest, policy, run).await {
                Ok(referrers) if referrers.is_empty() && policy.require => {
                    image.error = Some(Failure::new(
                        "would fail: no referrer matching artifacts.include upstream, and artifacts.require is set",
                    ));
                }
                Ok(referrers) => image.referrers = referrers,
                Err(error) => image.error = Some(Failure::registry("cannot list referrers", &error)),
            }
        }
        image
    }))
    .buffered(HEAD_CONCURRENCY)
    .collect()
    .await;
    MappingPlan { invalid_tags, ..plan::mapping_plan(mapping, selection, images) }
}

/// What `verify` would decide for an image about to be copied: an enforced refusal is an
/// error the plan shows, a warned one and a signer are noted. Images in place are not checked
/// (nor would the copy check them).
async fn planned_verification<R: Registry>(
    image: &mut ImagePlan,
    source: &R,
    repository: &str,
    policy: &crate::verify::Policy,
) {
    let Some(digest) = image.digest.clone().filter(|_| image.needs_copy()) else {
        return;
    };
    match crate::verify::check(source, repository, &digest, policy).await {
        Verdict::Verified { signer } => image.verify = Some(format!("signed by {signer}")),
        Verdict::Unverified { reason } if policy.mode == Mode::Warn => {
            image.verify = Some(format!("unverified, copied under mode warn: {reason}"));
        }
        Verdict::Unverified { reason } => image.error = Some(Failure::new(format!("would fail: unverified: {reason}"))),
    }
}

/// The referrers a copy would bring along: of the image, of its children, and theirs.
async fn planned_referrers<R: Registry>(
    source: &R,
    repository: &str,
    digest: &Digest,
    policy: &ArtifactPolicy,
    run: Shared<'_>,
) -> Result<Vec<PlannedReferrer>, crate::registry::Error> {
    let mut subjects = vec![digest.clone()];
    if let Ok(ManifestKind::Index { children }) = run.manifests.get(source, repository, digest).await?.kind() {
        let mut seen = HashSet::from([digest.clone()]);
        subjects.extend(children.into_iter().map(|c| c.digest).filter(|d| seen.insert(d.clone())));
    }
    let found = run.referrers.discover(source, repository, subjects, policy).await?;
    let mut planned = Vec::new();
    for upstream in &found {
        let subject = upstream.subject();
        planned.extend(upstream.referrers().iter().map(|r| PlannedReferrer {
            subject: subject.clone(),
            digest: r.digest.clone(),
            kind: r.artifact_type.clone().unwrap_or_else(|| "unknown artifact type".into()),
        }));
        planned.extend(upstream.cosign_tags().iter().map(|(tag, digest)| PlannedReferrer {
            subject: subject.clone(),
            digest: digest.clone(),
            kind: format!("cosign tag {tag}"),
        }));
    }
    Ok(planned)
}

/// An image's distinct blobs, children included: one GET per distinct manifest (none for one
/// already read in this plan), no blob reads. `None` when a manifest cannot be read
/// (`Err(None)`), or why the graph is refused (too deep, too large), as a copy would.
async fn image_bytes<R: Registry>(
    source: &R,
    repository: &str,
    digest: &Digest,
    manifests: &Manifests,
) -> Result<Vec<BlobDescriptor>, Option<Shape>> {
    let top = manifests.get(source, repository, digest).await.map_err(|_| None)?;
    let read = |child: Digest| async move { manifests.get(source, repository, &child).await.map(|m| Some((m, ()))) };
    let graph = crate::engine::walk(top, (), HEAD_CONCURRENCY, read).await.map_err(|error| match error {
        WalkError::Shape(shape) => Some(shape),
        WalkError::Read(_) => None,
    })?;
    let mut seen = HashSet::new();
    let blobs = graph.nodes().flat_map(|node| match &node.kind {
        // Non-distributable layers are not moved (the engine copies one only where the source
        // holds it), so they count for nothing here.
        ManifestKind::Image { blobs, .. } => blobs.as_slice(),
        ManifestKind::Index { .. } => &[],
    });
    Ok(blobs.filter(|b| seen.insert(&b.digest)).cloned().collect())
}
