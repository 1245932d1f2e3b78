//! The copy path of an image that brings its referrers or is narrowed to some platforms.
//!
//! An index is read first: its children are subjects of referrers too, and a narrowed index is
//! rebuilt from it. Where a target already has the image it is read there (same bytes by
//! digest), so an unchanged tag costs the source no manifest GET. Referrers are discovered
//! before anything is pushed, so `artifacts.require` refuses an unsigned image without
//! writing; then the image goes as usual (skipped where in place), then its referrers, each
//! after its subject.

use std::sync::Arc;

use super::{Engine, Error, ImageJob, Live, label};
use crate::oci::{Digest, Manifest, ManifestKind, media_type, narrow};
use crate::registry::Registry;

/// What the report says beyond the per-target outcomes.
#[derive(Debug, Default)]
pub(super) struct Extras {
    /// The digest pushed, when it is not the source's.
    pub target_digest: Option<Digest>,
    /// Notes for the user.
    pub warnings: Vec<String>,
    /// Who signed the image, when `verify` checked it.
    pub signer: Option<String>,
}

impl Engine {
    /// Copies `digest` with its referrers and/or as a platform subset to the targets in `lives`.
    pub(super) async fn copy_with_extras<R: Registry>(
        &self,
        job: &ImageJob<'_, R>,
        digest: &Digest,
        lives: &[Live<'_, R>],
    ) -> Extras {
        let source = &job.source;
        let all: Vec<&Live<R>> = lives.iter().collect();
        let fail_all = |error: Error| {
            let error = Arc::new(error);
            all.iter().for_each(|live| live.fail(error.clone()));
        };
        let mut extras = Extras::default();
        let reference = || label(source.registry, source.repository, &source.reference);
        // A single manifest, as discovery's HEAD said: its only subject is itself, so its bytes
        // are needed only if some target lacks it.
        // Only the two manifest types count: a registry that answers HEAD with a generic type
        // may be serving an index.
        let single = source
            .media_type
            .as_deref()
            .is_some_and(|t| [media_type::OCI_MANIFEST, media_type::DOCKER_MANIFEST].contains(&t));
        // Nor is an index's when no referrer can exist in the repository (and no platform
        // subset is asked for): its children would only be listed as subjects.
        let needs_manifest = if single {
            false
        } else if !job.platforms.is_empty() {
            true
        } else {
            match self.referrers.none_possible(source.registry, source.repository, digest).await {
                Ok(none) => !none,
                Err(error) => {
                    fail_all(error.into());
                    return extras;
                }
            }
        };
        // Targets already in place are known before the manifest is needed (unless a platform
        // subset is pushed, whose digest only the rebuilt index tells): one of them can serve
        // the index, sparing the source a manifest GET (Docker Hub counts those as pulls).
        let early = if job.platforms.is_empty() { Some(self.pending_targets(digest, lives).await) } else { None };
        let manifest = if !needs_manifest {
            None
        } else {
            let in_place: Vec<&Live<R>> =
                all.iter().copied().filter(|live| early.is_some() && !live.failed() && live.is_skipped()).collect();
            match self.fetch_in_place(digest, &in_place).await {
                Some(manifest) => Some(manifest),
                None => {
                    let Some(manifest) = self.fetch_top(source, digest, &all).await else {
                        return extras;
                    };
                    Some(manifest)
                }
            }
        };
        let (pushed, mut subjects) = match manifest {
            None => (None, vec![digest.clone()]),
            Some(manifest) => match self.narrowed(job, digest, manifest, &mut extras) {
                Ok(found) => found,
                Err(reason) => {
                    fail_all(Error::Platforms { reference: reference(), reason });
                    return extras;
                }
            },
        };
        if let Some(Ok(ManifestKind::Index { children })) = pushed.as_ref().map(|m| m.kind()) {
            subjects.extend(children.into_iter().map(|child| child.digest));
        }
        let upstream = match job.artifacts {
            None => Vec::new(),
            Some(policy) => match self.referrers.discover(source.registry, source.repository, subjects, policy).await {
                Ok(upstream) => upstream,
                Err(error) => {
                    fail_all(error.into());
                    return extras;
                }
            },
        };
        if job.artifacts.is_some_and(|policy| policy.require) && upstream.iter().all(|u| u.is_empty()) {
            fail_all(Error::Unsigned { reference: reference() });
            return extras;
        }
        let pending = match early {
            Some(pending) => pending,
            None => self.pending_targets(pushed.as_ref().map_or(digest, |m| &m.digest), lives).await,
        };
        // The source's digest is what its publisher signed, also when a subset is pushed.
        if !pending.is_empty() && self.admitted(job, digest, &pending, &mut extras).await {
            if self.cancel.is_cancelled() {
                pending.iter().for_each(|live| live.fail(Arc::new(Error::Cancelled)));
            } else {
                let manifest = match pushed {
                    Some(manifest) => Some(manifest),
                    None => self.fetch_top(source, digest, &pending).await,
                };
                if let Some(manifest) = manifest {
                    let targets = pending.into_iter().map(|live| (live, live.target.reference.clone())).collect();
                    self.copy_manifest(source, &manifest, targets).await;
                }
            }
        }
        self.copy_referrers(source, &upstream, &all).await;
        extras
    }

    /// `digest` as a target that already has it serves it: the same bytes (checked against
    /// the digest), without a request to the source.
    async fn fetch_in_place<R: Registry>(&self, digest: &Digest, in_place: &[&Live<'_, R>]) -> Option<Manifest> {
        for live in in_place {
            let target = live.target;
            match target.registry.get_manifest(target.repository, digest.as_str()).await {
                Ok(manifest) if digest.same_algorithm_of(&manifest.bytes) == *digest => return Some(manifest),
                Ok(_) => {
                    tracing::warn!(target = target.registry.name(), %digest, "target served other bytes for the digest; reading the source")
                }
                Err(error) => {
                    tracing::debug!(target = target.registry.name(), %digest, %error, "cannot read the index at the target; reading the source")
                }
            }
        }
        None
    }

    /// The manifest to push (an index narrowed to `job.platforms`, or the source's as it is)
    /// and the subjects whose referrers follow: the source's own digest unless it was rebuilt.
    fn narrowed<R: Registry>(
        &self,
        job: &ImageJob<'_, R>,
        digest: &Digest,
        manifest: Manifest,
        extras: &mut Extras,
    ) -> Result<(Option<Manifest>, Vec<Digest>), String> {
        if job.platforms.is_empty() || !manifest.is_index() {
            return Ok((Some(manifest), vec![digest.clone()]));
        }
        let narrowed = narrow(&manifest, job.platforms)?;
        if narrowed.index.digest == *digest {
            // Every child matched: the source bytes go unchanged, and signatures over them hold.
            return Ok((Some(manifest), vec![digest.clone()]));
        }
        extras.warnings.push(format!(
            "platforms: pushed index {} rebuilt from {digest} with {} of its entries; signatures and attestations over {digest} do not cover it (those over the kept children do)",
            narrowed.index.digest, narrowed.kept
        ));
        extras.target_digest = Some(narrowed.index.digest.clone());
        Ok((Some(narrowed.index), Vec::new()))
    }
}
