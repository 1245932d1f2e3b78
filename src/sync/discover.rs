//! Discovery for one mapping: list the source's tags, filter them, HEAD each kept tag at the
//! source and at every target. No manifest or blob is read unless bytes are estimated.
//! Listed names that are not valid OCI tags are dropped and counted before anything else.

use std::collections::HashSet;

use futures_util::StreamExt;

use super::Clients;
use crate::config::Mapping;
use crate::engine::Referrers;
use crate::oci::{ArtifactPolicy, Digest, ManifestKind};
use crate::plan::{self, Failure, MappingPlan, PlannedReferrer};
use crate::registry::Registry;

/// Tags HEADed at once within one mapping.
const HEAD_CONCURRENCY: usize = 16;

/// Plans one mapping; problems become the plan's error or an image's error, never a panic.
/// `referrers` holds the run's referrer lookups (dry runs list referrers; one API probe per
/// registry and run, and the tag list discovery made serves the fallback tag schema).
pub async fn discover<R: Registry>(
    mapping: &Mapping,
    clients: &Clients<R>,
    estimate_bytes: bool,
    referrers: &Referrers,
) -> MappingPlan {
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
        image.media_type = media_type.filter(|t| !t.is_empty());
        if estimate_bytes
            && image.needs_copy()
            && let Some(digest) = &image.digest
        {
            image.bytes = image_bytes(source, &mapping.from, digest).await;
        }
        if estimate_bytes && let (Some(policy), Some(digest)) = (&mapping.artifacts, &image.digest) {
            match planned_referrers(source, &mapping.from, digest, policy, referrers).await {
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
    plan::MappingPlan { invalid_tags, ..plan::mapping_plan(mapping, selection, images) }
}

/// The referrers a copy would bring along: of the image, of its children, and theirs.
async fn planned_referrers<R: Registry>(
    source: &R,
    repository: &str,
    digest: &Digest,
    policy: &ArtifactPolicy,
    referrers: &Referrers,
) -> Result<Vec<PlannedReferrer>, crate::registry::Error> {
    let mut subjects = vec![digest.clone()];
    if let Ok(ManifestKind::Index { children }) = source.get_manifest(repository, digest.as_str()).await?.kind() {
        subjects.extend(children.into_iter().map(|c| c.digest));
    }
    let found = referrers.discover(source, repository, subjects, policy).await?;
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

/// The size of an image's distinct blobs, children included (manifest GETs, no blob reads).
async fn image_bytes<R: Registry>(source: &R, repository: &str, digest: &Digest) -> Option<u64> {
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut pending = vec![digest.clone()];
    while let Some(next) = pending.pop() {
        let manifest = source.get_manifest(repository, next.as_str()).await.ok()?;
        match manifest.kind().ok()? {
            ManifestKind::Index { children } => pending.extend(children.into_iter().map(|c| c.digest)),
            ManifestKind::Image { blobs } => {
                total += blobs.into_iter().filter(|b| seen.insert(b.digest.clone())).map(|b| b.size).sum::<u64>();
            }
        }
    }
    Some(total)
}
