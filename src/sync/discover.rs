//! Discovery for one mapping: list the source's tags, filter them, HEAD each kept tag at the
//! source and at every target. No manifest or blob is read unless bytes are estimated.

use std::collections::HashSet;

use futures_util::StreamExt;

use super::Clients;
use crate::config::Mapping;
use crate::oci::{Digest, ManifestKind};
use crate::plan::{self, MappingPlan};
use crate::registry::Registry;

/// Tags HEADed at once within one mapping.
const HEAD_CONCURRENCY: usize = 16;

/// Plans one mapping; problems become the plan's error or an image's error, never a panic.
pub async fn discover<R: Registry>(mapping: &Mapping, clients: &Clients<R>, estimate_bytes: bool) -> MappingPlan {
    let source = match clients.get(&mapping.source) {
        Ok(source) => source,
        Err(error) => return plan::failed_mapping(mapping, error),
    };
    let listed = match source.list_tags(&mapping.from).await {
        Ok(tags) => tags,
        Err(error) => return plan::failed_mapping(mapping, format!("cannot list tags: {error}")),
    };
    let selection = match plan::select_tags(mapping, &listed) {
        Ok(selection) => selection,
        Err(error) => return plan::failed_mapping(mapping, error),
    };
    let images = futures_util::stream::iter(selection.kept.iter().map(|tag| async move {
        let source_digest = source
            .head_manifest(&mapping.from, tag)
            .await
            .map(|head| head.map(|h| h.digest))
            .map_err(|e| e.to_string());
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
        if estimate_bytes
            && image.needs_copy()
            && let Some(digest) = &image.digest
        {
            image.bytes = image_bytes(source, &mapping.from, digest).await;
        }
        image
    }))
    .buffered(HEAD_CONCURRENCY)
    .collect()
    .await;
    plan::mapping_plan(mapping, selection, images)
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
