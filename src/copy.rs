//! The copy engine for one image: children before the index, blobs before the manifest, the
//! tag last, so a tag at the target never points at something incomplete.
//!
//! Nothing unchanged is transferred: a target tag that already has the source digest costs
//! two HEADs; a blob already at the target is not sent; a blob in another repository of the
//! same registry is mounted instead of uploaded.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;
use tokio::sync::OnceCell;

use crate::oci::{BlobDescriptor, Digest, Manifest, ManifestKind, Reference};
use crate::registry::{self, MountOutcome, Registry};

/// Attempts per blob transfer (a failed transfer restarts from the source).
const BLOB_ATTEMPTS: u32 = 3;

/// Why a copy failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A registry operation failed.
    #[error(transparent)]
    Registry(#[from] registry::Error),
    /// Another task of this run was transferring the same blob and failed.
    #[error("blob {digest} failed in another transfer of this run: {reason}")]
    SharedBlobFailed {
        /// The blob.
        digest: Digest,
        /// The other transfer's error.
        reason: String,
    },
    /// The source tag or digest does not exist.
    #[error("source {reference} not found")]
    SourceNotFound {
        /// The source reference.
        reference: String,
    },
}

impl Error {
    /// Credentials were missing or refused somewhere.
    pub fn is_auth(&self) -> bool {
        matches!(self, Error::Registry(e) if e.is_auth())
    }
}

/// Counters of one run, shared by concurrent transfers (and read by progress displays).
#[derive(Debug, Default)]
pub struct Stats {
    /// Blobs streamed from source to target.
    pub blobs_copied: AtomicU64,
    /// Blobs already present at the target.
    pub blobs_skipped: AtomicU64,
    /// Blobs mounted from another repository of the target registry.
    pub blobs_mounted: AtomicU64,
    /// Manifests pushed (children and tags).
    pub manifests_pushed: AtomicU64,
    /// Bytes streamed so far, including transfers still running and failed attempts.
    pub bytes_transferred: Arc<AtomicU64>,
}

/// A point-in-time copy of [`Stats`], for reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    /// Blobs streamed.
    pub blobs_copied: u64,
    /// Blobs already present.
    pub blobs_skipped: u64,
    /// Blobs mounted.
    pub blobs_mounted: u64,
    /// Manifests pushed.
    pub manifests_pushed: u64,
    /// Bytes streamed.
    pub bytes: u64,
}

impl Stats {
    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            blobs_copied: self.blobs_copied.load(Ordering::Relaxed),
            blobs_skipped: self.blobs_skipped.load(Ordering::Relaxed),
            blobs_mounted: self.blobs_mounted.load(Ordering::Relaxed),
            manifests_pushed: self.manifests_pushed.load(Ordering::Relaxed),
            bytes: self.bytes_transferred.load(Ordering::Relaxed),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The blobs this run has handled, by target registry, repository and digest. The first task
/// that needs a blob does the work; concurrent tasks wait for its result instead of sending
/// the same bytes again (images of an index often share their base layers).
#[derive(Debug, Default)]
pub struct BlobLedger {
    entries: std::sync::Mutex<HashMap<(String, String, Digest), Arc<BlobResult>>>,
}

/// The outcome of one blob's transfer, set once; the error as text for the tasks that waited.
type BlobResult = OnceCell<Result<(), String>>;

impl BlobLedger {
    fn entry(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
    ) -> Arc<OnceCell<Result<(), String>>> {
        let mut entries = self.entries.lock().expect("ledger lock poisoned");
        let key = (registry.to_string(), repository.to_string(), digest.clone());
        entries.entry(key).or_default().clone()
    }
}

/// What happened to one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ImageOutcome {
    /// The image was copied (some parts may already have been there).
    Copied {
        /// Digest of the top-level manifest, equal at source and target.
        digest: Digest,
    },
    /// The target already had the source digest under that tag.
    Skipped {
        /// The digest both sides have.
        digest: Digest,
        /// Why nothing was done.
        reason: String,
    },
}

/// One side of a copy: a registry client and a repository in it.
pub struct Endpoint<'a, R> {
    /// The registry.
    pub registry: &'a R,
    /// The repository.
    pub repository: &'a str,
}

/// Copies one image, index or artifact.
pub struct ImageCopy<'a, R> {
    /// Where the image comes from.
    pub source: Endpoint<'a, R>,
    /// Where it goes.
    pub target: Endpoint<'a, R>,
    /// Counters to update.
    pub stats: &'a Stats,
    /// Blobs already handled in this run.
    pub ledger: &'a BlobLedger,
    /// Blob transfers in flight at once for this image.
    pub concurrency: usize,
}

impl<R: Registry> ImageCopy<'_, R> {
    /// Copies `source_reference` (tag or digest) to `target_reference` (tag or digest).
    pub async fn run(
        &self,
        source_reference: &Reference,
        target_reference: &str,
    ) -> Result<ImageOutcome, Error> {
        let digest = match &source_reference.digest {
            Some(digest) => digest.clone(),
            None => {
                let tag = source_reference.manifest_reference();
                let head = self
                    .source
                    .registry
                    .head_manifest(self.source.repository, &tag)
                    .await?;
                head.ok_or_else(|| Error::SourceNotFound {
                    reference: source_reference.to_string(),
                })?
                .digest
            }
        };
        if let Some(existing) = self
            .target
            .registry
            .head_manifest(self.target.repository, target_reference)
            .await?
            && existing.digest == digest
        {
            return Ok(ImageOutcome::Skipped {
                digest,
                reason: "target already has this digest".into(),
            });
        }
        let manifest = match self
            .source
            .registry
            .get_manifest(self.source.repository, digest.as_str())
            .await
        {
            Err(error) if error.is_not_found() => {
                return Err(Error::SourceNotFound {
                    reference: source_reference.to_string(),
                });
            }
            result => result?,
        };
        self.copy_manifest(&manifest, target_reference).await?;
        Ok(ImageOutcome::Copied { digest })
    }

    /// Copies what `manifest` refers to, then pushes it under `target_reference`.
    async fn copy_manifest(
        &self,
        manifest: &Manifest,
        target_reference: &str,
    ) -> Result<(), Error> {
        let kind = manifest
            .kind()
            .map_err(|source| registry::Error::Manifest {
                registry: self.source.registry.name().to_string(),
                repository: self.source.repository.to_string(),
                reference: manifest.digest.to_string(),
                source: Box::new(source),
            })?;
        match kind {
            ManifestKind::Index { children } => {
                futures_util::stream::iter(
                    children.iter().map(|child| self.copy_child(&child.digest)),
                )
                .buffer_unordered(self.concurrency.max(1))
                .try_collect::<Vec<()>>()
                .await?;
            }
            ManifestKind::Image { blobs } => {
                futures_util::stream::iter(
                    dedupe(&blobs).into_iter().map(|blob| self.copy_blob(blob)),
                )
                .buffer_unordered(self.concurrency.max(1))
                .try_collect::<Vec<()>>()
                .await?;
            }
        }
        self.target
            .registry
            .put_manifest(self.target.repository, target_reference, manifest)
            .await?;
        bump(&self.stats.manifests_pushed);
        Ok(())
    }

    /// A child of an index, pushed by digest unless the target already has it.
    async fn copy_child(&self, digest: &Digest) -> Result<(), Error> {
        if self
            .target
            .registry
            .head_manifest(self.target.repository, digest.as_str())
            .await?
            .is_some()
        {
            return Ok(());
        }
        let child = self
            .source
            .registry
            .get_manifest(self.source.repository, digest.as_str())
            .await?;
        // Boxed: an index may (rarely) contain another index.
        Box::pin(self.copy_manifest(&child, digest.as_str())).await
    }

    /// Transfers a blob once per run and target repository, however many images need it.
    async fn copy_blob(&self, blob: &BlobDescriptor) -> Result<(), Error> {
        let entry = self.ledger.entry(
            self.target.registry.name(),
            self.target.repository,
            &blob.digest,
        );
        let mut own_error = None;
        let outcome = entry
            .get_or_init(|| async {
                self.transfer_blob(blob).await.map_err(|error| {
                    let reason = error.to_string();
                    own_error = Some(error);
                    reason
                })
            })
            .await;
        match (outcome, own_error) {
            (Ok(()), _) => Ok(()),
            (Err(_), Some(error)) => Err(error),
            (Err(reason), None) => Err(Error::SharedBlobFailed {
                digest: blob.digest.clone(),
                reason: reason.clone(),
            }),
        }
    }

    async fn transfer_blob(&self, blob: &BlobDescriptor) -> Result<(), Error> {
        let (source, target) = (&self.source, &self.target);
        if target
            .registry
            .blob_exists(target.repository, &blob.digest)
            .await?
        {
            bump(&self.stats.blobs_skipped);
            return Ok(());
        }
        let mut session = None;
        if target.registry.same_registry(source.registry) && target.repository != source.repository
        {
            match target
                .registry
                .mount_blob(target.repository, &blob.digest, source.repository)
                .await?
            {
                MountOutcome::Mounted => {
                    bump(&self.stats.blobs_mounted);
                    return Ok(());
                }
                MountOutcome::NotMounted(opened) => session = Some(opened),
            }
        }
        let mut attempt = 1;
        loop {
            let counter = self.stats.bytes_transferred.clone();
            let body = source.registry.get_blob(source.repository, blob).await?;
            let body = body
                .inspect_ok(move |chunk| {
                    counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                })
                .boxed();
            match target
                .registry
                .push_blob(target.repository, blob, body, session.take())
                .await
            {
                Ok(()) => {
                    bump(&self.stats.blobs_copied);
                    return Ok(());
                }
                Err(error) if error.is_retryable() && attempt < BLOB_ATTEMPTS => {
                    tracing::warn!(digest = %blob.digest, attempt, %error, "blob transfer failed; retrying");
                    tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
                    attempt += 1;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
}

/// The blobs of a manifest without repeats (an image may list the same layer twice).
fn dedupe(blobs: &[BlobDescriptor]) -> Vec<&BlobDescriptor> {
    let mut seen = std::collections::HashSet::new();
    blobs.iter().filter(|b| seen.insert(&b.digest)).collect()
}
