//! Referrers follow their images: discovery at the source (the OCI 1.1 referrers API, or the
//! `sha256-<hex>` fallback index tag and cosign's tags where it is absent), then copies to the
//! targets after their subject, each referrer bit for bit, blobs first.
//!
//! A referrer already at a target costs only the listing there. Registries without the API
//! are asked once per run (the first 404 is remembered), and their tag schema is read from
//! one tag list per repository and run, so a subject without referrers costs no request of
//! its own. At such a target the fallback index is extended, never shortened.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use super::stats::Event;
use super::{Engine, Error, Live, Source};
use crate::oci::{
    ArtifactPolicy, COSIGN_TAGS, Digest, Manifest, Referrer, cosign_tag, fallback_tag, index_of, merge, parse_index,
};
use crate::registry::{self, Registry};

/// Levels of referrers followed below an image (a signature on an attestation is level 2).
const MAX_DEPTH: usize = 3;

/// What one registry lists for one subject.
#[derive(Debug, Default)]
pub(super) struct Listing {
    /// Answered by the referrers API (no fallback index to maintain).
    api: bool,
    /// Referrer descriptors, from the API or the fallback index.
    referrers: Vec<Referrer>,
    /// The fallback index as stored (tag schema only).
    fallback: Option<Manifest>,
    /// cosign tags present, with their digests.
    cosign: Vec<(String, Digest)>,
}

impl Listing {
    /// Nothing refers to the subject.
    fn is_empty(&self) -> bool {
        self.referrers.is_empty() && self.cosign.is_empty()
    }

    fn has(&self, digest: &Digest) -> bool {
        self.referrers.iter().any(|r| &r.digest == digest)
    }

    /// Keeps what the policy admits; cosign tags count as cosign's artifact types.
    fn retain(&mut self, policy: &ArtifactPolicy) {
        self.referrers.retain(|r| policy.admits(r.artifact_type.as_deref()));
        self.cosign.retain(|(tag, _)| {
            COSIGN_TAGS.iter().any(|(suffix, artifact_type)| {
                tag.ends_with(&format!(".{suffix}")) && policy.admits(Some(artifact_type))
            })
        });
    }
}

/// The referrers of one subject at the source, already filtered.
#[derive(Debug)]
pub struct Upstream {
    subject: Digest,
    listing: Listing,
}

impl Upstream {
    /// Nothing upstream refers to this subject.
    pub fn is_empty(&self) -> bool {
        self.listing.is_empty()
    }

    /// The subject.
    pub fn subject(&self) -> &Digest {
        &self.subject
    }

    /// Referrers listed by the API or the fallback index.
    pub fn referrers(&self) -> &[Referrer] {
        &self.listing.referrers
    }

    /// cosign tags and their digests.
    pub fn cosign_tags(&self) -> &[(String, Digest)] {
        &self.listing.cosign
    }
}

/// A repository's tags, listed once per run and extended with what the run pushes.
type TagSet = Arc<OnceCell<Mutex<HashSet<String>>>>;

/// Referrer lookups of one run: which registries lack the referrers API, and tag lists by
/// registry and repository.
#[derive(Default)]
pub struct Referrers {
    /// Whether each registry has the referrers API, once known; the first listing at a
    /// registry holds the lock while it finds out, so the question is asked once.
    api: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<bool>>>>>,
    tags: Mutex<HashMap<(String, String), TagSet>>,
}

impl Referrers {
    async fn tags<R: Registry>(&self, registry: &R, repository: &str) -> registry::Result<HashSet<String>> {
        let key = (registry.name().to_string(), repository.to_string());
        let cell = self.tags.lock().expect("tag cache lock poisoned").entry(key).or_default().clone();
        let tags = cell
            .get_or_try_init(|| async {
                match registry.list_tags(repository).await {
                    Ok(tags) => Ok(Mutex::new(tags.into_iter().collect())),
                    Err(error) if error.is_not_found() => Ok(Mutex::default()),
                    Err(error) => Err(error),
                }
            })
            .await?;
        Ok(tags.lock().expect("tag set lock poisoned").clone())
    }

    /// Takes a repository's tags from a listing made elsewhere in the run (discovery's).
    pub fn known_tags<R: Registry>(&self, registry: &R, repository: &str, tags: impl IntoIterator<Item = String>) {
        let key = (registry.name().to_string(), repository.to_string());
        let cell = self.tags.lock().expect("tag cache lock poisoned").entry(key).or_default().clone();
        // Already set means already listed in this run; either listing will do.
        let _ = cell.set(Mutex::new(tags.into_iter().collect()));
    }

    /// Remembers a tag this run pushed, so later listings see it without asking again.
    fn pushed<R: Registry>(&self, registry: &R, repository: &str, tag: &str) {
        let key = (registry.name().to_string(), repository.to_string());
        if let Some(cell) = self.tags.lock().expect("tag cache lock poisoned").get(&key)
            && let Some(tags) = cell.get()
        {
            tags.lock().expect("tag set lock poisoned").insert(tag.to_string());
        }
    }

    fn api_memo<R: Registry>(&self, registry: &R) -> Arc<tokio::sync::Mutex<Option<bool>>> {
        self.api.lock().expect("api memo lock poisoned").entry(registry.name().to_string()).or_default().clone()
    }

    /// Whether nothing in `repository` at `registry` can have referrers: the registry lacks
    /// the referrers API and no tag of the repository follows the `sha256-<hex>` schemas.
    /// Then an index need not be read just to list its children as subjects. Answering may
    /// cost the run's one API probe (a listing of `subject`, repeated by discovery where the
    /// API exists).
    pub async fn none_possible<R: Registry>(
        &self,
        registry: &R,
        repository: &str,
        subject: &Digest,
    ) -> registry::Result<bool> {
        let memo = self.api_memo(registry);
        let mut api = memo.lock().await;
        if api.is_none() {
            *api = Some(registry.list_referrers(repository, subject, None).await?.is_some());
        }
        if *api != Some(false) {
            return Ok(false);
        }
        drop(api);
        Ok(!self.tags(registry, repository).await?.iter().any(|t| t.starts_with("sha256-")))
    }

    /// What `registry` lists for `subject`: the API's answer, or the tag schema's.
    async fn listing<R: Registry>(
        &self,
        registry: &R,
        repository: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> registry::Result<Listing> {
        let known = self.api_memo(registry);
        let mut api = known.lock().await;
        let answer = match *api {
            Some(false) => {
                drop(api);
                None
            }
            Some(true) => {
                drop(api);
                registry.list_referrers(repository, subject, artifact_type).await?
            }
            None => {
                let answer = registry.list_referrers(repository, subject, artifact_type).await?;
                *api = Some(answer.is_some());
                drop(api);
                if answer.is_none() {
                    tracing::debug!(registry = registry.name(), "no referrers API; using the fallback tag schema");
                }
                answer
            }
        };
        if let Some(referrers) = answer {
            return Ok(Listing { api: true, referrers, ..Listing::default() });
        }
        let tags = self.tags(registry, repository).await?;
        let mut listing = Listing::default();
        let fallback = fallback_tag(subject);
        if tags.contains(&fallback) {
            let index = registry.get_manifest(repository, &fallback).await?;
            listing.referrers = parse_index(&index.bytes).map_err(|source| registry::Error::Manifest {
                registry: registry.name().to_string(),
                repository: repository.to_string(),
                reference: fallback.clone(),
                source: Box::new(source),
            })?;
            listing.fallback = Some(index);
        }
        for (suffix, _) in COSIGN_TAGS {
            let tag = cosign_tag(subject, suffix);
            if tags.contains(&tag)
                && let Some(head) = registry.head_manifest(repository, &tag).await?
            {
                listing.cosign.push((tag, head.digest));
            }
        }
        Ok(listing)
    }

    /// The referrers of `subjects` at the source that `policy` admits, and theirs in turn,
    /// breadth first: every subject comes before the referrers that refer to it.
    pub async fn discover<R: Registry>(
        &self,
        registry: &R,
        repository: &str,
        subjects: Vec<Digest>,
        policy: &ArtifactPolicy,
    ) -> registry::Result<Vec<Upstream>> {
        let mut found = Vec::new();
        let mut seen: HashSet<Digest> = subjects.iter().cloned().collect();
        let mut level = subjects;
        for _ in 0..MAX_DEPTH {
            if level.is_empty() {
                break;
            }
            let listings = futures_util::future::join_all(
                level.iter().map(|subject| self.listing(registry, repository, subject, policy.single_type())),
            )
            .await;
            let mut next = Vec::new();
            for (subject, listing) in level.into_iter().zip(listings) {
                let mut listing = listing?;
                listing.retain(policy);
                next.extend(listing.referrers.iter().map(|r| r.digest.clone()).filter(|d| seen.insert(d.clone())));
                found.push(Upstream { subject, listing });
            }
            level = next;
        }
        Ok(found)
    }
}

impl Engine {
    /// Brings what `upstream` lists to every target still healthy, subject by subject.
    pub(super) async fn copy_referrers<R: Registry>(
        &self,
        source: &Source<'_, R>,
        upstream: &[Upstream],
        lives: &[&Live<'_, R>],
    ) {
        for entry in upstream.iter().filter(|entry| !entry.listing.is_empty()) {
            let healthy: Vec<&Live<R>> = lives.iter().copied().filter(|live| !live.failed()).collect();
            if healthy.is_empty() {
                return;
            }
            let listings = futures_util::future::join_all(healthy.iter().map(|live| {
                self.referrers.listing(live.target.registry, live.target.repository, &entry.subject, None)
            }))
            .await;
            let mut at_targets = Vec::new();
            for (live, listing) in healthy.into_iter().zip(listings) {
                match listing {
                    Ok(listing) => at_targets.push((live, listing)),
                    Err(error) => live.fail(Arc::new(error.into())),
                }
            }
            for referrer in &entry.listing.referrers {
                let needy: Vec<&Live<R>> = at_targets
                    .iter()
                    .filter(|(live, listing)| !live.failed() && !listing.has(&referrer.digest))
                    .map(|(live, _)| *live)
                    .collect();
                if !needy.is_empty() {
                    self.copy_child(source, &referrer.digest, &needy).await;
                    needy
                        .iter()
                        .filter(|live| !live.failed())
                        .for_each(|live| self.record(live, Event::ReferrerCopied));
                }
            }
            self.copy_cosign_tags(source, &entry.listing, &at_targets).await;
            for (live, listing) in at_targets.iter().filter(|(live, listing)| !listing.api && !live.failed()) {
                self.extend_fallback_index(&entry.subject, &entry.listing, live, listing).await;
            }
        }
    }

    /// cosign's tags, copied as they are to the targets whose tag differs.
    async fn copy_cosign_tags<R: Registry>(
        &self,
        source: &Source<'_, R>,
        upstream: &Listing,
        at_targets: &[(&Live<'_, R>, Listing)],
    ) {
        for (tag, digest) in &upstream.cosign {
            let needy: Vec<(&Live<R>, String)> = at_targets
                .iter()
                .filter(|(live, listing)| {
                    !live.failed() && !listing.cosign.iter().any(|(t, d)| t == tag && d == digest)
                })
                .map(|(live, _)| (*live, tag.clone()))
                .collect();
            if needy.is_empty() {
                continue;
            }
            match source.registry.get_manifest(source.repository, digest.as_str()).await {
                Ok(manifest) => {
                    let lives: Vec<&Live<R>> = needy.iter().map(|(live, _)| *live).collect();
                    self.copy_manifest(source, &manifest, needy).await;
                    for live in lives.into_iter().filter(|live| !live.failed()) {
                        self.referrers.pushed(live.target.registry, live.target.repository, tag);
                        self.record(live, Event::ReferrerCopied);
                    }
                }
                Err(error) => {
                    let error = Arc::new(Error::from(error));
                    needy.iter().for_each(|(live, _)| live.fail(error.clone()));
                }
            }
        }
    }

    /// At a target without the referrers API: the fallback index lists every referrer the
    /// source lists, keeping the entries it had. The source's own index is copied verbatim
    /// when the target has none and nothing was filtered out.
    async fn extend_fallback_index<R: Registry>(
        &self,
        subject: &Digest,
        upstream: &Listing,
        live: &Live<'_, R>,
        at_target: &Listing,
    ) {
        if upstream.referrers.is_empty() {
            return;
        }
        let target = live.target;
        let tag = fallback_tag(subject);
        let index = match (&at_target.fallback, &upstream.fallback) {
            (Some(existing), _) => match merge(existing, &upstream.referrers) {
                Ok(Some(merged)) => merged,
                Ok(None) => return,
                Err(source) => {
                    live.fail(Arc::new(Error::Registry(registry::Error::Manifest {
                        registry: target.registry.name().to_string(),
                        repository: target.repository.to_string(),
                        reference: tag,
                        source: Box::new(source),
                    })));
                    return;
                }
            },
            (None, Some(verbatim))
                if parse_index(&verbatim.bytes).is_ok_and(|all| all.len() == upstream.referrers.len()) =>
            {
                verbatim.clone()
            }
            (None, _) => index_of(&upstream.referrers),
        };
        match target.registry.put_manifest(target.repository, &tag, &index).await {
            Ok(()) => {
                self.referrers.pushed(target.registry, target.repository, &tag);
                self.record(live, Event::ManifestPushed);
            }
            Err(error) => live.fail(Arc::new(error.into())),
        }
    }
}
