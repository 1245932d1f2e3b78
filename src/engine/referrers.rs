//! Referrers follow their images: discovery at the source (the OCI 1.1 referrers API, or the
//! `sha256-<hex>` fallback index tag where it is absent, and cosign's tags in both cases:
//! cosign writes them by default even where the API exists), then copies to the targets after
//! their subject, each referrer bit for bit, blobs first.
//!
//! A referrer already at a target costs only the listing there. Whether a registry has the API
//! is asked once per run (a 404, 400, 405 or 501 answer, or a 401/403 on that route alone, is
//! remembered as "no API"), and the tag schema is read from one tag list per repository and
//! run, so a subject without referrers costs no request of its own. At such a target the
//! fallback index is extended, never shortened.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use super::stats::Event;
use super::{Engine, Error, Live, Source};
use crate::oci::{
    ArtifactPolicy, COSIGN_TAGS, Digest, Manifest, Referrer, cosign_tag, fallback_tag, index_of, merge, parse_index,
    validate_tag,
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

/// Where a listing looks for cosign's tags.
#[derive(Clone, Copy)]
enum CosignTags<'a> {
    /// In the repository's tag list (the source; a target without the API).
    Listed,
    /// The tags the source has, each HEADed: where the API exists at a target, its tag list
    /// is not needed for anything else.
    Like(&'a [(String, Digest)]),
}

/// Whether a failed referrers listing means the registry has no referrers API: 400, 405 or
/// 501, or a 401/403 on that route alone (a HEAD of the subject with the same credentials is
/// allowed; otherwise the credentials are at fault and the error stands).
pub(super) async fn refuses_route<R: Registry>(
    registry: &R,
    repository: &str,
    subject: &Digest,
    error: &registry::Error,
) -> bool {
    error.is_unsupported_route()
        || (error.is_auth() && registry.head_manifest(repository, subject.as_str()).await.is_ok())
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
    /// Answers `read` from the repository's tags (listed at most once per run), without
    /// copying the set: it is asked once per subject.
    async fn with_tags<R: Registry, T>(
        &self,
        registry: &R,
        repository: &str,
        read: impl FnOnce(&HashSet<String>) -> T,
    ) -> registry::Result<T> {
        let key = (registry.name().to_string(), repository.to_string());
        let cell = self.tags.lock().expect("tag cache lock poisoned").entry(key).or_default().clone();
        let tags = cell
            .get_or_try_init(|| async {
                match registry.list_tags(repository).await {
                    // Only membership of computed names is asked, but names that are not tags
                    // are not kept either.
                    Ok(tags) => Ok(Mutex::new(tags.into_iter().filter(|t| validate_tag(t).is_ok()).collect())),
                    Err(error) if error.is_not_found() => Ok(Mutex::default()),
                    Err(error) => Err(error),
                }
            })
            .await?;
        Ok(read(&tags.lock().expect("tag set lock poisoned")))
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

    /// The referrers API's answer for `subject`, or `None` where the registry has no such API.
    /// The first listing at a registry holds the memo while it finds out, so the question is
    /// asked once per run. Besides 404 (distribution 2.8), 400, 405 and 501 mean "no API"
    /// (registries that do not route `/referrers/`), and so does a 401 or 403 on that route
    /// alone, when a HEAD of the subject with the same credentials is allowed.
    async fn api_listing<R: Registry>(
        &self,
        registry: &R,
        repository: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> registry::Result<Option<Vec<Referrer>>> {
        let memo = self.api_memo(registry);
        let probing = memo.lock().await;
        let probing = match *probing {
            Some(false) => return Ok(None),
            // Known to exist: listings run concurrently.
            Some(true) => {
                drop(probing);
                None
            }
            None => Some(probing),
        };
        let (answer, refusal) = match registry.list_referrers(repository, subject, artifact_type).await {
            Ok(answer) => (answer, None),
            Err(error) if refuses_route(registry, repository, subject, &error).await => (None, Some(error)),
            Err(error) => return Err(error),
        };
        let mut known = match probing {
            Some(probing) => probing,
            None if answer.is_some() => return Ok(answer),
            None => memo.lock().await,
        };
        if answer.is_none() && *known != Some(false) {
            match refusal {
                Some(error) => tracing::warn!(
                    registry = registry.name(),
                    %error,
                    "the referrers API refused a listing; treating it as absent and using the fallback tag schema"
                ),
                None => tracing::debug!(registry = registry.name(), "no referrers API; using the fallback tag schema"),
            }
        }
        *known = Some(known.unwrap_or(true) && answer.is_some());
        Ok(answer)
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
        if self.api_listing(registry, repository, subject, None).await?.is_some() {
            return Ok(false);
        }
        self.with_tags(registry, repository, |tags| !tags.iter().any(|t| t.starts_with("sha256-"))).await
    }

    /// What `registry` lists for `subject`: the API's answer, or the fallback index; and
    /// cosign's tags, which cosign writes by default even where the API exists.
    async fn listing<R: Registry>(
        &self,
        registry: &R,
        repository: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
        cosign: CosignTags<'_>,
    ) -> registry::Result<Listing> {
        let mut listing = match self.api_listing(registry, repository, subject, artifact_type).await? {
            Some(referrers) => Listing { api: true, referrers, ..Listing::default() },
            None => self.fallback_listing(registry, repository, subject).await?,
        };
        let candidates: Vec<String> = match cosign {
            // Where the API answers, only the tags the source has are asked after.
            CosignTags::Like(upstream) if listing.api => upstream.iter().map(|(tag, _)| tag.clone()).collect(),
            _ => {
                let wanted = COSIGN_TAGS.iter().map(|(suffix, _)| cosign_tag(subject, suffix));
                self.with_tags(registry, repository, |tags| wanted.filter(|t| tags.contains(t)).collect()).await?
            }
        };
        for tag in candidates {
            if let Some(head) = registry.head_manifest(repository, &tag).await? {
                listing.cosign.push((tag, head.digest));
            }
        }
        Ok(listing)
    }

    /// The fallback index of `subject`, read when the tag list has its tag.
    async fn fallback_listing<R: Registry>(
        &self,
        registry: &R,
        repository: &str,
        subject: &Digest,
    ) -> registry::Result<Listing> {
        let mut listing = Listing::default();
        let fallback = fallback_tag(subject);
        if self.with_tags(registry, repository, |tags| tags.contains(&fallback)).await? {
            let index = registry.get_manifest(repository, &fallback).await?;
            listing.referrers = parse_index(&index.bytes).map_err(|source| registry::Error::Manifest {
                registry: registry.name().to_string(),
                repository: repository.to_string(),
                reference: fallback.clone(),
                source: Box::new(source),
            })?;
            listing.fallback = Some(index);
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
            let listings =
                futures_util::future::join_all(level.iter().map(|subject| {
                    self.listing(registry, repository, subject, policy.single_type(), CosignTags::Listed)
                }))
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
                let cosign = CosignTags::Like(&entry.listing.cosign);
                self.referrers.listing(live.target.registry, live.target.repository, &entry.subject, None, cosign)
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
